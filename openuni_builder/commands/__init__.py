"""The console scripts: argument parsing, messages and exit codes, and nothing else. Each module's
`main(argv) -> int` calls the library (build, eval, publish, trainer), so every library module can
be imported and used without argparse."""
