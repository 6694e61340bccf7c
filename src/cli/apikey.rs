//! `portcullis apikey new`: a fresh random API key, and the `[[keys]]` entry (hash only) to add
//! to the keys file (made by `authn::apikey::issue`).

use crate::authn::apikey::issue::new_key;

/// Print the key alone on the first line, then the entry.
pub fn run(
    id: &str,
    identity: &str,
    owner: Option<&str>,
    expires: Option<&str>,
) -> anyhow::Result<()> {
    let k = new_key(id, identity, owner, expires)?;
    println!("{}", k.key);
    println!();
    print!("{}", k.entry);
    eprintln!(
        "The key (first line) is shown only once; give it to the client. Append the [[keys]] entry to the keys file."
    );
    Ok(())
}

#[cfg(test)]
mod tests;
