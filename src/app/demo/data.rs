//! The demo's records: their deterministic generation and their JSON form.
//!
//! Everything random comes from a hand-written splitmix64 so that a given seed
//! yields the same data on every platform and every version of `rand`.

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

/// splitmix64: tiny, fast and good enough for fake restaurant data.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `lo..=hi`; the modulo bias is irrelevant at these ranges.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The instant the initial data starts at, so that a fresh demo always looks the same.
pub(crate) fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

pub(crate) fn now_seconds() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Currency {
    Eur,
    Usd,
}

impl Currency {
    fn code(self) -> &'static str {
        match self {
            Currency::Eur => "EUR",
            Currency::Usd => "USD",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    Paid,
    Refunded,
}

impl Status {
    fn code(self) -> &'static str {
        match self {
            Status::Open => "OPEN",
            Status::Paid => "PAID",
            Status::Refunded => "REFUNDED",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Order {
    pub(crate) n: u64,
    pub(crate) cents: u64,
    /// `None` means the till left the key out; the order is in EUR.
    pub(crate) currency: Option<Currency>,
    pub(crate) status: Status,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) note: Option<&'static str>,
}

impl Order {
    pub(crate) fn id(&self) -> String {
        format!("ord_{:05}", self.n)
    }

    pub(crate) fn to_json(&self) -> Value {
        let amount = money(self.cents);
        let mut m = Map::new();
        m.insert("id".into(), Value::from(self.id()));
        m.insert("total".into(), Value::from(amount.clone()));
        m.insert("amount".into(), Value::from(amount));
        if let Some(c) = self.currency {
            m.insert("currency".into(), Value::from(c.code()));
        }
        m.insert("status".into(), Value::from(self.status.code()));
        m.insert("created_at".into(), Value::from(rfc3339(self.created_at)));
        m.insert("note".into(), self.note.map_or(Value::Null, Value::from));
        Value::Object(m)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Payment {
    /// Monotonic sequence number: the id and the paging cursor.
    pub(crate) seq: u64,
    pub(crate) cents: u64,
    pub(crate) currency: Currency,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) description: Option<String>,
}

impl Payment {
    pub(crate) fn id(&self) -> String {
        format!("pay_{:05}", self.seq)
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut amount = Map::new();
        amount.insert("value".into(), Value::from(money(self.cents)));
        amount.insert("currency".into(), Value::from(self.currency.code()));
        let mut m = Map::new();
        m.insert("id".into(), Value::from(self.id()));
        m.insert("amount".into(), Value::Object(amount));
        m.insert("createdAt".into(), Value::from(rfc3339(self.created_at)));
        m.insert(
            "description".into(),
            self.description.clone().map_or(Value::Null, Value::from),
        );
        Value::Object(m)
    }
}

const NOTES: &[&str] = &[
    "no onions",
    "table 4",
    "birthday — bring a candle",
    "allergy: nuts",
    "extra jalapeños",
    "pick-up at 19:30",
    "split the bill \"50/50\"",
];

const MENU: &[(&str, &str)] = &[
    ("SKU-MARG", "Margherita pizza"),
    ("SKU-DIAV", "Diavola pizza"),
    ("SKU-CARB", "Spaghetti carbonara"),
    ("SKU-LASG", "Lasagne"),
    ("SKU-RISO", "Mushroom risotto"),
    ("SKU-CAES", "Caesar salad"),
    ("SKU-BURG", "Cheeseburger"),
    ("SKU-FRIE", "Fries"),
    ("SKU-TIRA", "Tiramisu"),
    ("SKU-GELA", "Gelato, two scoops"),
    ("SKU-ESPR", "Espresso"),
    ("SKU-LEMO", "Lemonade"),
    ("SKU-WINE", "House red, glass"),
    ("SKU-WATR", "Sparkling water"),
];

const PAYMENT_TEXTS: &[&str] = &[
    "Web order",
    "App order",
    "Delivery order",
    "Gift card top-up",
    "Catering deposit",
];

fn cents(rng: &mut Rng) -> u64 {
    rng.range(300, 18_000)
}

/// Seconds to the next record: often zero so that several records share a second.
fn gap(rng: &mut Rng, n: u64) -> i64 {
    if n.is_multiple_of(25) || rng.chance(3, 20) {
        0
    } else {
        // at most 900, so the cast cannot wrap
        rng.range(20, 900) as i64
    }
}

/// The initial data advances from the base time by random gaps; live data follows the
/// wall clock. Either way a record is never older than the one before, which keeps the
/// lists sorted by time without sorting.
fn next_time(
    last: Option<DateTime<Utc>>,
    live: Option<DateTime<Utc>>,
    rng: &mut Rng,
    n: u64,
) -> DateTime<Utc> {
    match (last, live) {
        (None, None) => base_time(),
        (Some(last), None) => last + Duration::seconds(gap(rng, n)),
        (None, Some(now)) => now,
        (Some(last), Some(now)) => last.max(now),
    }
}

/// Generates orders and payments in sequence; also the demo's live state.
#[derive(Debug)]
pub(crate) struct Store {
    order_rng: Rng,
    payment_rng: Rng,
    seed: u64,
    pub(crate) orders: Vec<Order>,
    pub(crate) payments: Vec<Payment>,
}

impl Store {
    pub(crate) fn new(seed: u64, orders: usize, payments: usize) -> Self {
        let mut store = Store {
            order_rng: Rng::new(mix(seed ^ 0x6F72_6465_7273)),
            payment_rng: Rng::new(mix(seed ^ 0x7061_796D_656E_7473)),
            seed,
            orders: Vec::with_capacity(orders),
            payments: Vec::with_capacity(payments),
        };
        for _ in 0..orders {
            store.push_order(None);
        }
        for _ in 0..payments {
            store.push_payment(None);
        }
        store
    }

    /// `live` is the wall clock for records added while serving, `None` while generating
    /// the initial data.
    pub(crate) fn push_order(&mut self, live: Option<DateTime<Utc>>) {
        let rng = &mut self.order_rng;
        let n = self.orders.len() as u64 + 1;
        let created_at = next_time(self.orders.last().map(|o| o.created_at), live, rng, n);
        let cents = cents(rng);
        let currency = if rng.chance(1, 15) {
            None
        } else if rng.chance(68, 100) {
            Some(Currency::Eur)
        } else {
            Some(Currency::Usd)
        };
        let status = match rng.range(0, 99) {
            0..=11 => Status::Open,
            12..=19 => Status::Refunded,
            _ => Status::Paid,
        };
        let note = if rng.chance(1, 5) {
            Some(NOTES[rng.range(0, NOTES.len() as u64 - 1) as usize])
        } else {
            None
        };
        self.orders.push(Order {
            n,
            cents,
            currency,
            status,
            created_at,
            note,
        });
    }

    pub(crate) fn push_payment(&mut self, live: Option<DateTime<Utc>>) {
        let rng = &mut self.payment_rng;
        let seq = self.payments.len() as u64 + 1;
        let created_at = next_time(self.payments.last().map(|p| p.created_at), live, rng, seq);
        let cents = cents(rng);
        let currency = if rng.chance(70, 100) {
            Currency::Eur
        } else {
            Currency::Usd
        };
        let description = if rng.chance(1, 4) {
            None
        } else {
            let text = PAYMENT_TEXTS[rng.range(0, PAYMENT_TEXTS.len() as u64 - 1) as usize];
            Some(format!("{text} #{}", 4000 + rng.range(0, 5999)))
        };
        self.payments.push(Payment {
            seq,
            cents,
            currency,
            created_at,
            description,
        });
    }

    /// Items depend only on the seed and the order number, so they need no storage and
    /// an order keeps its items for the life of the process.
    pub(crate) fn items(&self, order_n: u64) -> Value {
        let mut rng = Rng::new(mix(self.seed ^ order_n.wrapping_mul(0xA24B_AED4_963E_E407)));
        let count = rng.range(1, 4) as usize;
        let mut picked: Vec<usize> = Vec::with_capacity(count);
        while picked.len() < count {
            let i = rng.range(0, MENU.len() as u64 - 1) as usize;
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        let items = picked
            .into_iter()
            .map(|i| {
                let (sku, name) = MENU[i];
                let mut m = Map::new();
                m.insert("sku".into(), Value::from(sku));
                m.insert("qty".into(), Value::from(rng.range(1, 3)));
                m.insert("name".into(), Value::from(name));
                Value::Object(m)
            })
            .collect();
        let mut body = Map::new();
        body.insert("items".into(), Value::Array(items));
        Value::Object(body)
    }
}
