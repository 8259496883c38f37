//! Synthetic residents and department records, deterministic by seed: realistic Chinese names,
//! addresses in the city's districts, valid national IDs (GB 11643 check digit) and mobile
//! numbers. Used by `govchain submit`, the demo, tests and benchmarks.

use std::collections::BTreeMap;

use govchain_chaincode::catalog::{DataSource, FieldDef, FieldType};
use govchain_chaincode::person::check_char;
use govchain_chaincode::records::Record;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁",
    "任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金", "石", "廖", "贾", "夏",
    "欧阳", "司马", "诸葛",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "秀", "英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "秀兰", "霞", "平", "刚", "桂", "文", "华", "建", "国", "志", "海", "红",
    "玉", "兰", "晨", "宇", "浩", "然", "子", "涵", "欣", "怡", "梓", "萱", "俊", "博", "思", "雨",
    "轩", "嘉", "琪", "佳", "鑫", "雪", "婷", "晓", "东", "春", "林", "斌", "鹏", "辉", "燕", "凤",
    "慧",
];
const DISTRICTS: &[(&str, &str)] = &[
    ("350102", "鼓楼区"),
    ("350103", "台江区"),
    ("350104", "仓山区"),
    ("350105", "马尾区"),
    ("350111", "晋安区"),
    ("350112", "长乐区"),
];
const STREETS: &[&str] = &[
    "五一中路",
    "八一七北路",
    "湖东路",
    "华林路",
    "六一北路",
    "工业路",
    "杨桥中路",
    "东街",
    "鼓屏路",
    "五四路",
    "福新中路",
    "福飞路",
    "连江北路",
    "江滨西大道",
    "金山大道",
    "浦上大道",
    "则徐大道",
    "温泉支路",
    "铜盘路",
    "西二环北路",
    "长乐中路",
    "南江滨西大道",
    "学府南路",
    "乌山西路",
];
const COMMUNITIES: &[&str] = &[
    "阳光花园",
    "金域华府",
    "温泉小区",
    "湖畔新村",
    "锦绣家园",
    "榕城名苑",
    "江南水都",
    "融侨锦江",
    "世纪金源",
    "左海公寓",
    "屏山新村",
    "金山碧水",
    "三盛国际",
    "正祥城",
];
const ORG_WORDS: &[&str] = &[
    "榕城",
    "闽江",
    "海峡",
    "鼓山",
    "三坊七巷",
    "东南",
    "新榕",
    "福瑞",
    "华信",
    "恒通",
];
const ORG_KINDS: &[&str] = &[
    "科技有限公司",
    "贸易有限公司",
    "建设工程有限公司",
    "餐饮管理有限公司",
    "物业服务有限公司",
    "医疗器械有限公司",
    "教育咨询有限公司",
];

/// A synthetic resident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// 18-digit national ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// 男 or 女.
    pub gender: &'static str,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    /// Residential address.
    pub address: String,
    /// Mobile number.
    pub phone: String,
}

fn rng_for(seed: u64, index: u64, salt: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.rotate_left(17),
    )
}

fn pick<'a, R: Rng>(rng: &mut R, xs: &[&'a str]) -> &'a str {
    xs.choose(rng).copied().unwrap_or_default()
}

/// A valid national ID for the region, birth date and sequence number.
pub fn national_id(region: &str, y: u32, m: u32, d: u32, seq: u32) -> String {
    let mut s = format!("{region}{y:04}{m:02}{d:02}{:03}", seq % 1000);
    let c = check_char(s.as_bytes());
    s.push(c);
    s
}

/// An address in the city.
pub fn address<R: Rng>(rng: &mut R) -> String {
    let (_, district) = DISTRICTS
        .choose(rng)
        .copied()
        .unwrap_or(("350102", "鼓楼区"));
    format!(
        "福建省福州市{district}{}{}号{}{}栋{}室",
        pick(rng, STREETS),
        rng.random_range(1..400),
        pick(rng, COMMUNITIES),
        rng.random_range(1..30),
        rng.random_range(101..2802)
    )
}

/// Resident number `index` of the synthetic population `seed`. Distinct indexes give distinct IDs.
pub fn person(seed: u64, index: u64) -> Person {
    let mut rng = rng_for(seed, index, 1);
    // Birth dates spread over 1940-2005 (66 years of 12 x 28 days); (district, date,
    // sequence) is unique per index, so IDs never collide: 133 million residents fit.
    const DAYS: u64 = 66 * 12 * 28;
    let (day, round) = (index % DAYS, index / DAYS);
    // For one day, `round` -> seq is a bijection on 0..1000 (1 + 7 * DAYS is prime to 1000);
    // the 7 * index term varies the sequence, and so the gender, from one day to the next.
    let seq = ((round + 7 * index) % 1000) as u32;
    let (region, _) = DISTRICTS[(round / 1000 % DISTRICTS.len() as u64) as usize];
    let (y, m, d) = (
        1940 + (day / 336) as u32,
        1 + (day / 28 % 12) as u32,
        1 + (day % 28) as u32,
    );
    let gender = if seq % 2 == 1 { "男" } else { "女" };
    let given: String = (0..rng.random_range(1..=2))
        .map(|_| pick(&mut rng, GIVEN))
        .collect();
    Person {
        id: national_id(region, y, m, d, seq),
        name: format!("{}{}", pick(&mut rng, SURNAMES), given),
        gender,
        birth_date: format!("{y:04}-{m:02}-{d:02}"),
        address: address(&mut rng),
        phone: format!(
            "1{}{:09}",
            pick(&mut rng, &["3", "5", "8", "7", "9"]),
            rng.random_range(0..1_000_000_000u64)
        ),
    }
}

fn date<R: Rng>(rng: &mut R, from_year: u32) -> String {
    let y = rng.random_range(from_year.max(1950)..=2025);
    format!(
        "{y:04}-{:02}-{:02}",
        rng.random_range(1..=12),
        rng.random_range(1..=28)
    )
}

fn text_value<R: Rng>(rng: &mut R, f: &FieldDef, p: &Person, unique: &str) -> String {
    let l = f.label.as_str();
    if l.contains("姓名") {
        if l == "姓名" || l.contains("申请人") || l.contains("权利人") || l.contains("户主")
        {
            p.name.clone()
        } else {
            person(rng.random(), rng.random_range(0..1_000_000)).name
        }
    } else if l.contains("出生地") {
        // A birthplace is a county, not a street address.
        let (_, district) = DISTRICTS[rng.random_range(0..DISTRICTS.len())];
        format!("福建省福州市{district}")
    } else if ["地址", "坐落", "住所", "场所", "住址"]
        .iter()
        .any(|w| l.contains(w))
    {
        p.address.clone()
    } else if l.contains("民族") {
        pick(rng, &["汉族", "汉族", "汉族", "畲族", "回族", "满族"]).to_string()
    } else if l.contains("名称") || l.contains("单位") {
        format!("福州{}{}", pick(rng, ORG_WORDS), pick(rng, ORG_KINDS))
    } else if [
        "编号",
        "号码",
        "代码",
        "账号",
        "文号",
        "证号",
        "案号",
        "户号",
        "流水号",
        "识别号",
        "单元号",
    ]
    .iter()
    .any(|w| l.contains(w))
    {
        format!("{}{unique}", f.name.to_uppercase())
    } else if l.contains("机关") || l.contains("派出所") || l.contains("法院") {
        format!(
            "福州市{}{}",
            DISTRICTS[rng.random_range(0..DISTRICTS.len())].1,
            if l.contains("法院") {
                "人民法院"
            } else {
                "派出所"
            }
        )
    } else {
        format!("{l}{}", rng.random_range(1..100))
    }
}

/// A record of `source` about `p`; `unique` makes the record key distinct per (source, record).
pub fn record<R: Rng>(rng: &mut R, source: &DataSource, p: &Person, unique: &str) -> Record {
    let mut fields = BTreeMap::new();
    let birth_year: u32 = p.birth_date[..4].parse().unwrap_or(1970);
    for f in &source.fields {
        if !f.required && rng.random_bool(0.2) {
            continue;
        }
        let is_person = source.person_field.as_deref() == Some(f.name.as_str());
        let is_key = f.name == source.record_key_field;
        let v = match &f.ty {
            // The record key is distinct per record, whatever its label says.
            FieldType::Text if is_key => format!("{}{unique}", f.name.to_uppercase()),
            FieldType::PersonId if is_person => p.id.clone(),
            FieldType::PersonId => person(rng.random(), rng.random_range(0..1_000_000)).id,
            FieldType::Text => text_value(rng, f, p, unique),
            FieldType::Integer => rng.random_range(0..1000).to_string(),
            FieldType::Decimal => format!(
                "{}.{:02}",
                rng.random_range(0..50_000),
                rng.random_range(0..100)
            ),
            FieldType::Date if f.label.contains("出生") => p.birth_date.clone(),
            FieldType::Date => date(rng, birth_year + 18),
            FieldType::DateTime => format!(
                "{} {:02}:{:02}:{:02}",
                date(rng, birth_year + 18),
                rng.random_range(0..24),
                rng.random_range(0..60),
                rng.random_range(0..60)
            ),
            FieldType::Phone => p.phone.clone(),
            FieldType::Boolean => pick(rng, &["是", "否"]).to_string(),
            FieldType::Enum(opts) => {
                if opts.iter().any(|o| o == p.gender) && opts.len() == 2 {
                    p.gender.to_string()
                } else {
                    opts.choose(rng).cloned().unwrap_or_default()
                }
            }
        };
        fields.insert(f.name.clone(), v);
    }
    let raw = serde_json::to_vec(&serde_json::json!({"source": source.id, "data": fields}))
        .unwrap_or_default();
    Record { fields, raw }
}

/// A deterministic generator of records across sources.
pub struct Generator {
    seed: u64,
    rng: ChaCha8Rng,
}

impl Generator {
    /// A generator for population `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The record of `source` for resident `index`.
    pub fn record_for(&mut self, source: &DataSource, index: u64) -> Record {
        let p = person(self.seed, index);
        record(&mut self.rng, source, &p, &format!("{:012}", index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govchain_chaincode::person::PersonId;

    #[test]
    fn people_are_valid_distinct_and_deterministic() {
        let mut ids = std::collections::HashSet::new();
        for i in 0..20_000 {
            let p = person(7, i);
            PersonId::parse(&p.id).unwrap_or_else(|e| panic!("{}: {e}", p.id));
            assert!(ids.insert(p.id.clone()), "duplicate id {}", p.id);
            assert!(p.name.chars().count() >= 2);
        }
        assert_eq!(person(7, 5), person(7, 5));
        // A realistic spread: both genders, many birth years and days (combined queries by
        // date range and fuzzy ID fragments behave as on real data).
        let people: Vec<Person> = (0..20_000).map(|i| person(7, i)).collect();
        let men = people.iter().filter(|p| p.gender == "男").count();
        assert!((8_000..12_000).contains(&men), "{men} men of 20000");
        let years: std::collections::HashSet<&str> =
            people.iter().map(|p| &p.birth_date[..4]).collect();
        assert!(years.len() >= 50, "{} birth years", years.len());
    }

    #[test]
    fn record_keys_are_distinct_in_every_catalog_source() {
        let catalog = govchain_genesis::catalog::default_catalog().unwrap();
        let mut g = Generator::new(1);
        for s in &catalog.sources {
            let keys: std::collections::HashSet<String> = (0..1000)
                .map(|i| g.record_for(s, i).fields[&s.record_key_field].clone())
                .collect();
            // Keyed by the person or by a generated number: one key per resident either way.
            assert_eq!(keys.len(), 1000, "{}: repeated record keys", s.id);
        }
    }

    #[test]
    fn records_validate_against_every_catalog_source() {
        let catalog = govchain_genesis::catalog::default_catalog().unwrap();
        let mut g = Generator::new(1);
        for s in &catalog.sources {
            for i in 0..20 {
                let r = g.record_for(s, i);
                r.validate(s)
                    .unwrap_or_else(|e| panic!("{}: {e}: {:?}", s.id, r.fields));
            }
        }
    }
}
