//! Deterministic, realistic provider profiles for demos and benchmarks.
//!
//! The same `(seed, index)` always yields the same profile, so a demo can seed HubSpot with the
//! first N profiles of a universe and then export an overlapping range: the overlap is what the
//! duplicate checks must find. Values vary the way real data does: domains with `www.`, upper
//! case, schemes and paths; emails with case variants; a small share of invalid values.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Radia",
    "Dennis",
    "Katherine",
    "Tim",
    "Hedy",
    "John",
    "Sophie",
    "Björn",
    "Zoë",
    "Chloé",
    "José",
    "Mónica",
    "Søren",
    "Łukasz",
    "Aiko",
    "Mei",
    "Ravi",
    "Priya",
    "Omar",
    "Fatima",
    "Noah",
    "Liam",
    "Emma",
    "Olivia",
    "Mateo",
    "Lucía",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Perlman",
    "Ritchie",
    "Johnson",
    "Berners-Lee",
    "Lamarr",
    "McCarthy",
    "Wilson",
    "Müller",
    "O'Neil",
    "García",
    "Nørgaard",
    "Kowalski",
    "Tanaka",
    "Chen",
    "Patel",
    "Sharma",
    "Haddad",
    "Khan",
    "Smith",
    "Brown",
    "Rossi",
    "Dubois",
];
const WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Aperture",
    "Massive",
    "Dynamic",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Blue",
    "Red",
    "Summit",
    "Vertex",
    "Nimbus",
    "Quantum",
    "Pioneer",
    "Harbor",
    "Granite",
    "Cedar",
    "Falcon",
    "Orion",
    "Atlas",
    "Beacon",
];
const KINDS: &[&str] = &[
    "Labs",
    "Systems",
    "Analytics",
    "Logistics",
    "Health",
    "Capital",
    "Robotics",
    "Foods",
    "Media",
    "Energy",
];
const SUFFIXES: &[&str] = &["Inc.", "LLC", "Ltd", "GmbH", "Corp", "", "", ""];
const TLDS: &[&str] = &["com", "com", "com", "io", "co", "net", "de", "co.uk", "fr"];
const CITIES: &[(&str, &str, &str)] = &[
    ("Boston", "Massachusetts", "United States"),
    ("Austin", "Texas", "United States"),
    ("Seattle", "Washington", "United States"),
    ("London", "", "United Kingdom"),
    ("Berlin", "", "Germany"),
    ("Zürich", "", "Switzerland"),
    ("Paris", "", "France"),
    ("Toronto", "Ontario", "Canada"),
];
const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "VP Sales",
    "Head of Marketing",
    "Data Engineer",
    "Account Executive",
    "Director of Operations",
];

/// One provider profile: id and fields.
pub type Profile = (String, BTreeMap<String, String>);

fn rng(seed: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index)
}

fn pick<'a>(r: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[r.random_range(0..xs.len())]
}

/// The canonical company `index` of universe `seed`: (name, domain).
fn company_identity(seed: u64, index: u64) -> (String, String) {
    let mut r = rng(seed, index);
    let a = pick(&mut r, WORDS);
    let b = pick(&mut r, KINDS);
    let suffix = pick(&mut r, SUFFIXES);
    let tld = pick(&mut r, TLDS);
    let name = format!(
        "{a} {b} {index}{}",
        if suffix.is_empty() {
            String::new()
        } else {
            format!(" {suffix}")
        }
    );
    let domain = format!("{}-{}{index}.{tld}", a.to_lowercase(), b.to_lowercase());
    (name, domain)
}

/// Company `index`: the website varies in form (`www.`, case, scheme, path), ~2% are invalid.
pub fn company(seed: u64, index: u64) -> Profile {
    let (name, domain) = company_identity(seed, index);
    let mut r = rng(seed ^ 0xC0, index);
    let website = match r.random_range(0..100) {
        0..=1 => "not a website".to_string(),
        2..=24 => format!("www.{domain}"),
        25..=39 => format!("https://WWW.{}/about", domain.to_uppercase()),
        40..=49 => format!("http://{domain}:80/"),
        _ => domain.clone(),
    };
    let (city, state, country) = CITIES[r.random_range(0..CITIES.len())];
    let mut f = BTreeMap::new();
    f.insert("name".into(), name);
    f.insert("website".into(), website);
    f.insert(
        "phone".into(),
        format!(
            "+1 555 {:03} {:04}",
            r.random_range(0..1000),
            r.random_range(0..10000)
        ),
    );
    f.insert("city".into(), city.into());
    if !state.is_empty() {
        f.insert("state".into(), state.into());
    }
    f.insert("country".into(), country.into());
    f.insert("employees".into(), r.random_range(5..50_000).to_string());
    (format!("co-{seed}-{index}"), f)
}

/// Contact `index`: works at company `index / 4`; email case varies, ~2% invalid emails.
pub fn contact(seed: u64, index: u64) -> Profile {
    let mut r = rng(seed ^ 0xC1, index);
    // The four contacts of a company get different first names, so the universe itself holds
    // no name + company duplicates (only the ones an export would create).
    let base = rng(seed ^ 0xC2, index / 4).random_range(0..FIRST.len());
    let first = FIRST[(base + (index % 4) as usize) % FIRST.len()];
    let last = pick(&mut r, LAST);
    let (company, domain) = company_identity(seed, index / 4);
    let local = format!("{}.{}{index}", ascii(first), ascii(last)).to_lowercase();
    let email = match r.random_range(0..100) {
        0..=1 => format!("{local}-at-{domain}"),
        2..=19 => format!("{}@{}", capitalize(&local), domain.to_uppercase()),
        20..=24 => format!("  {local}@{domain} "),
        _ => format!("{local}@{domain}"),
    };
    let (city, _, country) = CITIES[r.random_range(0..CITIES.len())];
    let mut f = BTreeMap::new();
    f.insert("first_name".into(), first.into());
    f.insert("last_name".into(), last.into());
    f.insert("email".into(), email);
    f.insert("job_title".into(), pick(&mut r, TITLES).into());
    f.insert("company_name".into(), company);
    f.insert(
        "direct_phone".into(),
        format!(
            "+1 555 {:03} {:04}",
            r.random_range(0..1000),
            r.random_range(0..10000)
        ),
    );
    f.insert("city".into(), city.into());
    f.insert("country".into(), country.into());
    (format!("ct-{seed}-{index}"), f)
}

/// Company `index` as HubSpot already holds it (canonical domain), for seeding the sandbox.
pub fn hubspot_company(seed: u64, index: u64) -> BTreeMap<String, String> {
    let (name, domain) = company_identity(seed, index);
    let (_, f) = company(seed, index);
    let mut p = BTreeMap::new();
    p.insert("name".into(), name);
    p.insert("domain".into(), domain);
    p.insert("city".into(), f["city"].clone());
    p.insert("country".into(), f["country"].clone());
    p
}

/// Contact `index` as HubSpot already holds it (lower-case email), for seeding the sandbox.
pub fn hubspot_contact(seed: u64, index: u64) -> BTreeMap<String, String> {
    let (_, f) = contact(seed, index);
    let (company, domain) = company_identity(seed, index / 4);
    let local = format!(
        "{}.{}{index}",
        ascii(&f["first_name"]),
        ascii(&f["last_name"])
    )
    .to_lowercase();
    let mut p = BTreeMap::new();
    p.insert("firstname".into(), f["first_name"].clone());
    p.insert("lastname".into(), f["last_name"].clone());
    p.insert("email".into(), format!("{local}@{domain}"));
    p.insert("company".into(), company);
    p
}

/// A sandbox seed (see crates/spoke-sandbox/README.md): one portal with owners, users (the
/// first a Super Admin with `admin_email`) and the first `companies`/`contacts` of the universe.
pub fn sandbox_seed(
    seed: u64,
    portal: u64,
    admin_email: &str,
    companies: u64,
    contacts: u64,
) -> serde_json::Value {
    let people = [
        (admin_email.to_string(), "Avery", "Admin", true),
        ("sam.seller@example.com".to_string(), "Sam", "Seller", false),
        ("riley.rep@example.com".to_string(), "Riley", "Rep", false),
        (
            "morgan.manager@example.com".to_string(),
            "Morgan",
            "Manager",
            false,
        ),
    ];
    let owners: Vec<_> = people
        .iter()
        .enumerate()
        .map(|(i, (email, first, last, _))| {
            serde_json::json!({"id": (501 + i).to_string(), "email": email, "firstName": first, "lastName": last, "userId": 9001 + i, "archived": false})
        })
        .collect();
    let users: Vec<_> = people
        .iter()
        .enumerate()
        .map(|(i, (email, _, _, admin))| {
            serde_json::json!({"id": (9001 + i).to_string(), "email": email, "superAdmin": admin, "ownerId": (501 + i).to_string(), "roleIds": []})
        })
        .collect();
    let company_records: Vec<_> = (0..companies)
        .map(|i| serde_json::json!({"id": (1_000_000 + i).to_string(), "properties": hubspot_company(seed, i)}))
        .collect();
    let contact_records: Vec<_> = (0..contacts)
        .map(|i| serde_json::json!({"id": (2_000_000 + i).to_string(), "properties": hubspot_contact(seed, i)}))
        .collect();
    serde_json::json!({"portals": [{
        "portalId": portal, "accountType": "STANDARD", "tier": "PROFESSIONAL", "timeZone": "US/Eastern",
        "companyCurrency": "USD", "uiDomain": "app.hubspot.com", "defaultOauthUser": admin_email,
        "owners": owners, "users": users, "standardProperties": true,
        "records": {"companies": company_records, "contacts": contact_records}
    }]})
}

fn ascii(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'a'..='z' | 'A'..='Z' => Some(c),
            'ö' | 'ø' => Some('o'),
            'ü' => Some('u'),
            'é' | 'ë' => Some('e'),
            'í' => Some('i'),
            'ó' => Some('o'),
            'ł' | 'Ł' => Some('l'),
            _ => None,
        })
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_by_seed_and_index() {
        assert_eq!(company(7, 42), company(7, 42));
        assert_eq!(contact(7, 42), contact(7, 42));
        assert_ne!(company(7, 42), company(8, 42));
        assert_ne!(contact(7, 42).0, contact(7, 43).0);
    }

    #[test]
    fn variants_and_invalid_values_appear() {
        let sites: Vec<String> = (0..1000)
            .map(|i| company(1, i).1["website"].clone())
            .collect();
        assert!(sites.iter().any(|s| s.starts_with("www.")));
        assert!(sites.iter().any(|s| s.contains("https://WWW.")));
        assert!(sites.iter().any(|s| s == "not a website"));
        let emails: Vec<String> = (0..1000)
            .map(|i| contact(1, i).1["email"].clone())
            .collect();
        assert!(
            emails.iter().any(|e| !e.contains('@')),
            "some invalid emails"
        );
        assert!(
            emails.iter().any(|e| e.chars().any(|c| c.is_uppercase())),
            "case variants"
        );
        // Contacts of the same company share its name.
        assert_eq!(
            contact(1, 0).1["company_name"],
            contact(1, 3).1["company_name"]
        );
    }
}
