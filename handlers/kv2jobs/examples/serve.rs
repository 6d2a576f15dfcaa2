//! Starts a Marathon and a Chronos double and prints their URLs (for trying kv2jobs by hand).
fn main() {
    let m = devstack::marathon::Marathon::start(Default::default()).unwrap();
    let c = devstack::chronos::Chronos::start(Default::default()).unwrap();
    println!("MARATHON_URL={} CHRONOS_URL={}", m.url(), c.url());
    std::thread::sleep(std::time::Duration::from_secs(600));
}
