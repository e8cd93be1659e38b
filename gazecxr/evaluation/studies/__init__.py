"""Studies that train and compare many models under one protocol and report them side by side."""
