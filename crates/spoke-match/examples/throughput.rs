//! Rough throughput of the key builders on typical records (`cargo run -p spoke-match --release
//! --example throughput`). Filtering runs these on millions of profiles; this shows the order of
//! magnitude, it is not a benchmark with statistics.

use std::hint::black_box;
use std::time::Instant;

use spoke_match::{CompanyFields, ContactFields, company_keys, contact_keys};

fn main() {
    const N: usize = 1_000_000;
    let companies = [
        ("https://www.Acme.com/about", "Acme, Inc.", "United States"),
        ("zoominfo.com", "ZoomInfo Technologies LLC", "USA"),
        (
            "https://www.bücher.de",
            "Bücher GmbH & Co. KG",
            "Deutschland",
        ),
        ("ørsted.com", "Ørsted A/S", "Denmark"),
    ];
    let contacts = [
        ("John.Doe@Acme.com", "John", "Doe", "Acme Inc"),
        ("jane@zoominfo.com", "Jane", "Smith", "ZoomInfo"),
        ("jürgen@bücher.de", "Jürgen", "Weiß", "Bücher GmbH"),
        ("not-an-email", "Zoë", "Ørsted", "Ørsted A/S"),
    ];

    let start = Instant::now();
    for i in 0..N {
        let (website, name, country) = companies[i % companies.len()];
        let fields = CompanyFields {
            website: Some(website),
            name: Some(name),
            country: Some(country),
            ..CompanyFields::default()
        };
        black_box(company_keys(black_box(&fields)));
    }
    let companies_per_s = N as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    for i in 0..N {
        let (email, first, last, company) = contacts[i % contacts.len()];
        let fields = ContactFields {
            email: Some(email),
            first_name: Some(first),
            last_name: Some(last),
            company: Some(company),
        };
        black_box(contact_keys(black_box(&fields)));
    }
    let contacts_per_s = N as f64 / start.elapsed().as_secs_f64();

    println!(
        "{{\"company_records_per_s\":{companies_per_s:.0},\"contact_records_per_s\":{contacts_per_s:.0},\"mix\":\"half ASCII, half non-ASCII\"}}"
    );
}
