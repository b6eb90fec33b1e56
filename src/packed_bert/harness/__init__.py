"""The LoadGen harness: QSL, SUT, schedulers, device workers, settings and run directories."""
