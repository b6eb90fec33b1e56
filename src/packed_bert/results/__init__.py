"""What runs leave behind: LoadGen's logs (read and written in one place) and the run
directories (named, created, finished and found in one place). Everything that reads a run
(harness, compliance, power, submission) goes through here."""
