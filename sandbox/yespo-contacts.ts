// Deterministic, realistic-looking Yespo (eSputnik) contacts for the sandbox
// and tests. Contact i of a given seed is always the same object, so a test
// can recompute what a pipeline should have written without storing anything.
// Shape follows the public "search contacts" response; fields we do not
// normalise (address, languageCode, ...) are there so pass-through is exercised.

const FIRST = ['Olena', 'Andrii', 'Maria', 'John', 'Anna', 'Piotr', 'Sofia', 'Dmytro', 'Emma', 'Lukas', 'Iryna', 'Noah'];
const LAST = ['Shevchenko', 'Kowalski', 'Smith', 'Bondarenko', 'Novak', 'Müller', 'Kovalenko', "O'Brien", 'Garcia', 'Tkachenko'];
const TOWNS = ['Kyiv', 'Lviv', 'Warsaw', 'Berlin', 'London', 'Odesa', 'Prague', 'Vienna'];
const LANGS = ['uk', 'en', 'pl', 'de'];
const ZONES = ['Europe/Kyiv', 'Europe/Warsaw', 'Europe/Berlin', 'Europe/London'];

/** Custom field ids as a Yespo account would define them. */
export const YESPO_FIELD_IDS = { city: 101_001, birthday: 101_002, loyaltyTier: 101_003 } as const;

export interface YespoContact {
  id: number;
  firstName: string;
  lastName: string;
  contactKey: string;
  channels: { type: 'email' | 'sms'; value: string }[];
  fields: { id: number; value: string }[];
  externalCustomerId: string | null;
  address: { town: string; region: string; postcode: string; address: string };
  languageCode: string;
  timeZone: string;
  groups: { id: number; name: string; type: 'Static' | 'Dynamic' }[];
}

/** 32-bit integer hash (xorshift-multiply): cheap, stable, well spread. */
function hash(n: number): number {
  let x = n | 0;
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  return (x ^ (x >>> 16)) >>> 0;
}

function pick<T>(list: readonly T[], h: number): T {
  return list[h % list.length];
}

/** A stable numeric seed for a group id, so two groups get different people. */
export function seedFor(groupId: string): number {
  let h = 2166136261;
  for (let i = 0; i < groupId.length; i++) h = Math.imul(h ^ groupId.charCodeAt(i), 16777619);
  return h >>> 0;
}

/**
 * Contact number `i` (0-based; it is served at startindex i + 1).
 * Ids are unique and increasing within a seed; about 1 in 3 contacts has no
 * phone and about 1 in 5 no externalCustomerId, like a real marketing list.
 */
export function yespoContact(i: number, seed = 0): YespoContact {
  const h = hash(i ^ seed);
  const h2 = hash(h + 1);
  const first = pick(FIRST, h);
  const last = pick(LAST, h >>> 8);
  const town = pick(TOWNS, h2);
  const id = 50_000_000 + (seed % 1000) * 1_000_000 + i;
  const email = `${first}.${last.replace(/[^A-Za-z]/g, '')}.${id}@example.com`.toLowerCase();
  const channels: YespoContact['channels'] = [{ type: 'email', value: email }];
  if (h % 3 !== 0) channels.push({ type: 'sms', value: `+38050${String(h2 % 10_000_000).padStart(7, '0')}` });
  const month = String((h2 % 12) + 1).padStart(2, '0');
  const day = String((h % 28) + 1).padStart(2, '0');
  return {
    id,
    firstName: first,
    lastName: last,
    contactKey: email,
    channels,
    fields: [
      { id: YESPO_FIELD_IDS.city, value: town },
      { id: YESPO_FIELD_IDS.birthday, value: `${1960 + (h2 % 45)}-${month}-${day}` },
      { id: YESPO_FIELD_IDS.loyaltyTier, value: pick(['bronze', 'silver', 'gold'], h >>> 4) },
    ],
    externalCustomerId: h % 5 === 0 ? null : `cust-${(seed % 1000).toString(36)}-${i}`,
    address: { town, region: town, postcode: String(10_000 + (h2 % 89_999)), address: `${(h % 200) + 1} Main St` },
    languageCode: pick(LANGS, h >>> 12),
    timeZone: pick(ZONES, h2 >>> 8),
    groups: [{ id: 7_000 + (seed % 100), name: 'All subscribers', type: 'Static' }],
  };
}
