#![allow(dead_code)]

pub mod lab;
