"""pytest configuration shared by the unit tests and the notebooks run under nbval."""


def pytest_collection_modifyitems(config, items):
    # nbval waits only 5 s for a cell's output messages after the cell has finished;
    # on a loaded machine (a 2-core CI box running torch) that can fail a cell that
    # succeeded. Give it a minute.
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
