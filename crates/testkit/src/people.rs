//! The first seed system's data: a civil registry in Elasticsearch.
//! `person_sabt` (people), `vehicle_sabt` (vehicles, each owned by a person)
//! and `company_sabt` (companies, each run by a person), generated
//! deterministically, with the mapping types a real registry index has
//! (custom date formats, epoch millis, objects, arrays, geo points).

use serde_json::{Value, json};

use crate::es::EsClient;

const FEMALE: &[&str] = &["Sara", "Maryam", "Zahra", "Fatemeh", "Narges", "Leila", "Parisa", "Neda", "Shirin", "Roya"];
const MALE: &[&str] = &["Ali", "Reza", "Mohammad", "Hossein", "Mehdi", "Amir", "Hamid", "Saeed", "Kaveh", "Dariush"];
const LAST: &[&str] = &[
    "Ahmadi",
    "Hosseini",
    "Karimi",
    "Rezaei",
    "Moradi",
    "Mohammadi",
    "Jafari",
    "Rahimi",
    "Sadeghi",
    "Kazemi",
    "Ebrahimi",
    "Ghasemi",
    "Nazari",
    "Heidari",
    "Akbari",
];
const CITIES: &[(&str, &str, f64, f64)] = &[
    ("Tehran", "Tehran", 35.69, 51.39),
    ("Mashhad", "Razavi Khorasan", 36.30, 59.61),
    ("Isfahan", "Isfahan", 32.65, 51.67),
    ("Shiraz", "Fars", 29.59, 52.58),
    ("Tabriz", "East Azerbaijan", 38.08, 46.29),
    ("Rasht", "Gilan", 37.28, 49.58),
];
const MAKES: &[&str] = &["Saipa", "Iran Khodro", "Peugeot", "Kia", "Renault", "Toyota"];
const COLORS: &[&str] = &["white", "black", "silver", "red", "blue"];

/// A stable pseudo-random number for `(i, salt)` (splitmix64).
fn mix(i: u64, salt: u64) -> u64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(salt.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<T: Copy>(list: &[T], i: u64, salt: u64) -> T {
    list[(mix(i, salt) % list.len() as u64) as usize]
}

pub fn national_id(i: u64) -> String {
    format!("{:010}", 1_000_000_000 + i * 7)
}

pub fn person_mapping(shards: u32) -> Value {
    json!({
        "settings": {"number_of_shards": shards},
        "mappings": {"properties": {
            "national_id": {"type": "keyword"},
            "first_name": {"type": "keyword"},
            "last_name": {"type": "keyword"},
            "father_name": {"type": "keyword"},
            "gender": {"type": "keyword"},
            "birth_date": {"type": "date", "format": "yyyy/MM/dd"},
            "birth_city": {"type": "keyword"},
            "registered_at": {"type": "date"},
            "alive": {"type": "boolean"},
            "address": {"properties": {
                "province": {"type": "keyword"}, "city": {"type": "keyword"}, "postal_code": {"type": "keyword"}
            }},
            "phones": {"type": "keyword"},
            "location": {"type": "geo_point"}
        }}
    })
}

/// Person `i`: the same document every time.
pub fn person(i: u64) -> Value {
    let gender = if mix(i, 1).is_multiple_of(2) { "F" } else { "M" };
    let (city, province, lat, lon) = pick(CITIES, i, 2);
    let year = 1940 + mix(i, 3) % 65;
    let phones: Vec<String> =
        (0..1 + mix(i, 4) % 3).map(|k| format!("09{:09}", mix(i, 10 + k) % 1_000_000_000)).collect();
    let jitter = |salt: u64| (mix(i, salt) % 1000) as f64 / 10_000.0;
    json!({
        "national_id": national_id(i),
        "first_name": pick(if gender == "F" { FEMALE } else { MALE }, i, 5),
        "last_name": pick(LAST, i, 6),
        "father_name": pick(MALE, i, 7),
        "gender": gender,
        "birth_date": format!("{year}/{:02}/{:02}", 1 + mix(i, 8) % 12, 1 + mix(i, 9) % 28),
        "birth_city": pick(CITIES, i, 20).0,
        "registered_at": format!("2025-03-{:02}T{:02}:{:02}:00Z", 1 + i % 23, mix(i, 21) % 24, mix(i, 22) % 60),
        "alive": !mix(i, 23).is_multiple_of(10),
        "address": {"province": province, "city": city, "postal_code": format!("{:010}", mix(i, 24) % 10_000_000_000)},
        // A one-phone person's phones is a plain string, as indexed documents often are.
        "phones": if phones.len() == 1 { json!(phones[0]) } else { json!(phones) },
        "location": {"lat": lat + jitter(25), "lon": lon + jitter(26)}
    })
}

pub fn vehicle_mapping() -> Value {
    json!({"mappings": {"properties": {
        "plate": {"type": "keyword"},
        "owner_national_id": {"type": "keyword"},
        "make": {"type": "keyword"},
        "model_year": {"type": "short"},
        "color": {"type": "keyword"},
        "registered_at": {"type": "date", "format": "epoch_millis"}
    }}})
}

/// Vehicle `i`, owned by one of `people` persons.
pub fn vehicle(i: u64, people: u64) -> Value {
    json!({
        "plate": format!("{:02}B{:03}-{:02}", 10 + mix(i, 30) % 89, mix(i, 31) % 1000, 10 + mix(i, 32) % 89),
        "owner_national_id": national_id(mix(i, 33) % people.max(1)),
        "make": pick(MAKES, i, 34),
        "model_year": 1995 + mix(i, 35) % 30,
        "color": pick(COLORS, i, 36),
        "registered_at": 1_735_689_600_000_u64 + mix(i, 37) % 7_000_000_000
    })
}

pub fn company_mapping() -> Value {
    json!({"mappings": {"properties": {
        "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
        "ceo_national_id": {"type": "keyword"},
        "founded": {"type": "date", "format": "strict_date"},
        "employees": {"type": "integer"},
        "capital": {"type": "scaled_float", "scaling_factor": 100},
        "sectors": {"type": "keyword"}
    }}})
}

/// Company `i`, run by one of `people` persons.
pub fn company(i: u64, people: u64) -> Value {
    let sectors = ["retail", "energy", "software", "logistics", "food"];
    json!({
        "name": format!("{} {} Co.", pick(LAST, i, 40), ["Trading", "Industries", "Group", "Systems"][(mix(i, 41) % 4) as usize]),
        "ceo_national_id": national_id(mix(i, 42) % people.max(1)),
        "founded": format!("{}-{:02}-{:02}", 1970 + mix(i, 43) % 55, 1 + mix(i, 44) % 12, 1 + mix(i, 45) % 28),
        "employees": 1 + mix(i, 46) % 5000,
        "capital": (mix(i, 47) % 100_000_000) as f64 / 100.0,
        "sectors": [sectors[(mix(i, 48) % 5) as usize], sectors[(mix(i, 49) % 5) as usize]]
    })
}

/// Create the three indices under `prefix` (`""` for the plain names) and fill them.
pub async fn load(client: &EsClient, prefix: &str, people: u64, shards: u32) -> anyhow::Result<[(String, u64); 3]> {
    let name = |n: &str| format!("{prefix}{n}");
    let (vehicles, companies) = (people / 2, people / 20 + 1);
    let sets: [(String, Value, u64); 3] = [
        (name("person_sabt"), person_mapping(shards), people),
        (name("vehicle_sabt"), vehicle_mapping(), vehicles),
        (name("company_sabt"), company_mapping(), companies),
    ];
    for (index, mapping, n) in &sets {
        let _ = client.delete_index(index).await;
        client.create_index(index, mapping.clone()).await?;
        let mut start = 0;
        while start < *n {
            let end = (start + 20_000).min(*n);
            let docs: Vec<(String, Value)> = (start..end)
                .map(|i| match index.trim_start_matches(prefix) {
                    "person_sabt" => (national_id(i), person(i)),
                    "vehicle_sabt" => (format!("v{i}"), vehicle(i, people)),
                    _ => (format!("c{i}"), company(i, people)),
                })
                .collect();
            client.bulk(index, &docs).await?;
            start = end;
        }
    }
    Ok(sets.map(|(index, _, n)| (index, n)))
}
