//! Helpers for the packet tests (see tests/).
