fn main() {
    std::process::exit(forklb::cli::main());
}
