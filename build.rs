fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true) // the protocol tests talk to the server as Terraform does
        .compile_protos(&["proto/tfplugin5.proto", "proto/plugin.proto"], &["proto"])?;
    Ok(())
}
