// The shared library libmoedist.so is the layers' static archives linked whole; this file only gives the
// target a source of its own.
