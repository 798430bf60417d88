fn main() {
    eprintln!("aijob-fetcher: not built yet");
}
