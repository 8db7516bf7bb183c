"""The shipped learned optimizers and rules, as package data of wheel installs (see README.md here)."""
