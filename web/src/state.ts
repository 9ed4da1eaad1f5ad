// The page state lives in the URL (path = page; query = app, range, zone,
// and what is picked on the page: a search, a user, a session, an event),
// so a link opens the same view. No view library here: the page's first
// script (main.ts) reads it too.
import { PRESETS, browserOffset, browserZone, isDay, makeRange, presetRange, zoneOffset, type Range } from './time';

export const PAGES = ['overview', 'events', 'errors', 'users', 'live', 'settings'] as const;
export type Page = (typeof PAGES)[number];

export interface ViewState {
  page: Page;
  app: string;
  preset: string; // a PRESETS key, or "custom"
  from: string;
  to: string;
  tz: string; // "" = the browser's zone
  // Picked on the page ("" = nothing): kept in the URL, cleared by the navigation.
  search: string;
  user: string;
  session: string;
  device: string;
  event: string; // Events: an event name; Errors: an error name
  attr: string; // Events: a property key of `event`
}

export const PICKS = ['search', 'user', 'session', 'device', 'event', 'attr'] as const;
export const NO_PICKS = { search: '', user: '', session: '', device: '', event: '', attr: '' };

export function readState(): ViewState {
  const q = new URLSearchParams(location.search);
  const name = location.pathname.replace(/^\/+|\/+$/g, '') || 'overview';
  const page = (PAGES as readonly string[]).includes(name) ? (name as Page) : 'overview';
  const from = q.get('from') ?? '';
  const to = q.get('to') ?? '';
  const custom = isDay(from) && isDay(to) && from <= to;
  const preset = custom ? 'custom' : PRESETS[q.get('range') ?? ''] ? (q.get('range') as string) : '7d';
  const picks = { ...NO_PICKS };
  for (const k of PICKS) picks[k] = q.get(k) ?? '';
  return { page, app: q.get('app') ?? '', preset, from: custom ? from : '', to: custom ? to : '', tz: q.get('tz') ?? '', ...picks };
}

export function urlOf(s: ViewState): string {
  const q = new URLSearchParams();
  if (s.app) q.set('app', s.app);
  if (s.preset === 'custom') {
    q.set('from', s.from);
    q.set('to', s.to);
  } else if (s.preset !== '7d') {
    q.set('range', s.preset);
  }
  if (s.tz) q.set('tz', s.tz);
  for (const k of PICKS) if (s[k]) q.set(k, s[k]);
  const qs = q.toString();
  return `/${s.page === 'overview' ? '' : s.page}${qs ? '?' + qs : ''}`;
}

export function zoneOf(s: ViewState): string {
  return s.tz || browserZone();
}

export function rangeOf(s: ViewState): Range {
  const offset = s.tz ? zoneOffset(s.tz) : browserOffset();
  return s.preset === 'custom' ? makeRange(s.from, s.to, offset) : presetRange(s.preset, offset);
}

// The app shown last in this browser: what the first page's questions are
// asked about before the session's list of apps is in.
const kLastApp = 'nucleon.app';

export function lastApp(): string {
  try {
    return localStorage.getItem(kLastApp) ?? '';
  } catch {
    return '';
  }
}

export function rememberApp(appId: string): void {
  try {
    localStorage.setItem(kLastApp, appId);
  } catch {
    // storage refused: the next first page waits for the session instead
  }
}
