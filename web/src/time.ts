// Date ranges and time zones. API v1 takes a range as inclusive Unix seconds
// and cuts days at a fixed offset (utcOffset, minutes east of UTC): the
// offset of the chosen zone now is used for the whole range.

export const PRESETS: Record<string, { label: string; days: number }> = {
  '7d': { label: 'Last 7 days', days: 7 },
  '30d': { label: 'Last 30 days', days: 30 },
  '90d': { label: 'Last 90 days', days: 90 },
};

// Read once: each Intl.DateTimeFormat costs a few milliseconds (the first of
// a page, tens), and the controls ask for every zone's offset on each render.
let ownZone = '';
export function browserZone(): string {
  if (!ownZone) ownZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  return ownZone;
}

const formats = new Map<string, Intl.DateTimeFormat>();

// Minutes east of UTC of the browser's own zone now. Date's offset, not Intl:
// the first Intl.DateTimeFormat of a page costs tens of milliseconds (its
// locale data), which the page's first requests need not wait for.
export function browserOffset(): number {
  const minutes = -new Date().getTimezoneOffset();
  return minutes === 0 ? 0 : minutes; // never -0
}

// Minutes east of UTC of `zone` at `at`.
export function zoneOffset(zone: string, at: Date = new Date()): number {
  let format = formats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formats.set(zone, format);
  }
  const parts = format.formatToParts(at);
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value ?? 0);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((asUtc - Math.floor(at.getTime() / 1000) * 1000) / 60000);
}

// "YYYY-MM-DD" of a UTC-midnight millisecond value.
export function dayKey(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function dayMs(key: string): number {
  return Date.parse(key + 'T00:00:00Z');
}

export function isDay(s: string | null | undefined): s is string {
  return !!s && /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(dayMs(s));
}

export interface Range {
  from: string; // first local day, inclusive
  to: string; // last local day, inclusive
  utcOffset: number;
  start: number; // Unix seconds
  end: number;
}

// Today's local date in a zone offset.
export function today(utcOffset: number, now: number = Date.now()): string {
  return dayKey(now + utcOffset * 60000);
}

export function makeRange(from: string, to: string, utcOffset: number): Range {
  const start = dayMs(from) / 1000 - utcOffset * 60;
  const end = dayMs(to) / 1000 + 86400 - 1 - utcOffset * 60;
  return { from, to, utcOffset, start, end };
}

export function presetRange(preset: string, utcOffset: number, now: number = Date.now()): Range {
  const days = PRESETS[preset]?.days ?? 7;
  const to = today(utcOffset, now);
  return makeRange(dayKey(dayMs(to) - (days - 1) * 86400000), to, utcOffset);
}

// The range of the same length just before `r`.
export function previousRange(r: Range): Range {
  const days = Math.round((dayMs(r.to) - dayMs(r.from)) / 86400000) + 1;
  return makeRange(dayKey(dayMs(r.from) - days * 86400000), dayKey(dayMs(r.from) - 86400000), r.utcOffset);
}

// Every day of a range, ascending.
export function daysOf(r: Range): string[] {
  const out: string[] = [];
  for (let d = dayMs(r.from); d <= dayMs(r.to); d += 86400000) out.push(dayKey(d));
  return out;
}

export function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '−' : '+';
  const m = Math.abs(minutes);
  return `UTC${sign}${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
}

export const ZONES = [
  'UTC',
  'America/Los_Angeles',
  'America/New_York',
  'America/Sao_Paulo',
  'Europe/London',
  'Europe/Paris',
  'Europe/Moscow',
  'Asia/Kolkata',
  'Asia/Shanghai',
  'Asia/Tokyo',
  'Australia/Sydney',
  'Pacific/Auckland',
];
