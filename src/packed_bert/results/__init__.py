"""LoadGen logs and run directories: the only readers of what a run leaves behind."""
