//! Prints what a fuzz input means: `cargo run --example show -- <target> <file>`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (target, file) = (&args[1], &args[2]);
    let data = std::fs::read(file).expect("reading the input");
    match target.as_str() {
        "open_directory" => {
            let ops = annals_fuzz::directory::parse(&data);
            for op in &ops {
                println!("{op:?}");
            }
            let built = annals_fuzz::directory::build(&ops);
            println!(
                "log clean: {}, forged tables: {}, cover: {:?}, separator {:?}, collide {}",
                built.log_clean, built.forged, built.cover, built.separator, built.collide
            );
            for (name, bytes) in &built.files {
                println!("file {name}: {} bytes", bytes.len());
            }
        }
        "operations_vs_model" => println!("{:#?}", annals_fuzz::model::decode(&data)),
        "decode_table" => {
            let case = annals_fuzz::table::decode(&data);
            println!("{}: {} bytes, must check out: {}", case.name, case.bytes.len(), case.must_check_out);
            for mutation in &case.mutations {
                println!("{mutation:?}");
            }
        }
        _ => println!("{data:?}"),
    }
}
