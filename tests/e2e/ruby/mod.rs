//! Suites driving step handlers written in Ruby, through the embedded Ruby VM.

mod ruby_handler_tests;
