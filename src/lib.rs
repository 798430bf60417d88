//! aijob: the Redis module. (Registration table arrives with the command shell.)
