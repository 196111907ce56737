//! Link fix for the ROS 2 Jazzy PyPI wheels (see scripts/env.sh), driven by an environment
//! variable that only that development environment sets; on a normal ROS 2 install this
//! script does nothing.
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=PERCEPTION_LINK_LIBPYTHON");
    if env::var_os("CARGO_FEATURE_ROS").is_none() {
        return;
    }
    // The wheels' librcl.so pulls in rosidl Python extensions that need CPython's symbols.
    if let Ok(libdir) = env::var("PERCEPTION_LINK_LIBPYTHON") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-L{libdir},-lpython3.11,--as-needed");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
    }
}
