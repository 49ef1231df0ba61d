fn main() {
    println!("hyperdht::Core {}", std::mem::size_of::<hyperdht::Core>());
    println!(
        "dht_rpc::Core<PeersHandler> {}",
        std::mem::size_of::<dht_rpc::Core<hyperdht::PeersHandler>>()
    );
    println!(
        "PeersHandler {}",
        std::mem::size_of::<hyperdht::PeersHandler>()
    );
    println!("PeerStore {}", std::mem::size_of::<hyperdht::PeerStore>());
    println!("Contact {}", std::mem::size_of::<dht_rpc::Contact>());
    println!("Config {}", std::mem::size_of::<dht_rpc::Config>());
    println!("Event {}", std::mem::size_of::<dht_rpc::Event>());
}
