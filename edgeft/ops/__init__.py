"""Pure functions with flat arguments (tensors, modules, numbers; never config objects)."""
