from reenact.cli import run

run()
