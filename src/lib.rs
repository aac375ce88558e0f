//! hamstr: gather data from many HTTP APIs into one store.
