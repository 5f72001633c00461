"""Named checks of a method against the contract, run on tiny generated boards
(`check_method`, and one pytest case per check and method)."""
