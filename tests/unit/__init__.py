"""Plain pytest of functions, modules and the command line."""
