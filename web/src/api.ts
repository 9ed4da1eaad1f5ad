// Calls to the server: API v1 (authorised by the session cookie, exactly the
// handlers scripts call with a token) and /api/session.

export interface AppRef {
  appId: string;
  name: string;
}

export interface SessionInfo {
  email: string;
  role: 'admin' | 'viewer';
  csrfToken: string;
  apps: AppRef[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrfToken = '';

// Answers asked for before the page that reads them is drawn (prefetch), each
// handed to the first apiGet of the same URL, once, within a few seconds.
const early = new Map<string, { answer: Promise<unknown>; at: number }>();
const kEarlyMs = 10000;

async function call<T>(method: string, url: string, body?: unknown): Promise<T> {
  return (await callWhole<{ data: T }>(method, url, body)).data;
}

// The whole JSON answer (the users list carries `total` beside `data`).
async function callWhole<T>(method: string, url: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json: { error?: string } = {};
  try {
    json = await res.json();
  } catch {
    // not JSON: fall through to the status
  }
  if (!res.ok) throw new ApiError(res.status, json.error ?? `HTTP ${res.status}`);
  return json as T;
}

export async function getSession(): Promise<SessionInfo> {
  const s = await call<SessionInfo>('GET', '/api/session');
  csrfToken = s.csrfToken;
  return s;
}

export async function signIn(email: string, password: string): Promise<SessionInfo> {
  const s = await call<SessionInfo>('POST', '/api/session', { email, password });
  early.clear(); // asked without a session: refused
  csrfToken = s.csrfToken;
  return s;
}

export async function signOut(): Promise<void> {
  await call('DELETE', '/api/session');
  csrfToken = '';
  early.clear();
}

export type Params = Record<string, string | number | undefined>;

function apiUrl(appId: string, path: string, params: Params): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const qs = q.toString();
  return `/api/v1/apps/${encodeURIComponent(appId)}/${path}${qs ? '?' + qs : ''}`;
}

// Starts GET requests now, so that they travel beside /api/session and the
// page's first render instead of after them. A failure waits for the page's
// own call to report it.
export function prefetch(appId: string, path: string, params: Params = {}): void {
  const url = apiUrl(appId, path, params);
  if (early.has(url)) return;
  const answer = call<unknown>('GET', url);
  answer.catch(() => undefined);
  early.set(url, { answer, at: Date.now() });
}

// GET /api/v1/apps/:appId/PATH?params
export function apiGet<T>(appId: string, path: string, params: Params = {}): Promise<T> {
  const url = apiUrl(appId, path, params);
  const got = early.get(url);
  if (got) {
    early.delete(url);
    if (Date.now() - got.at < kEarlyMs) return got.answer as Promise<T>;
  }
  return call<T>('GET', url);
}

export function apiGetWhole<T>(appId: string, path: string, params: Params = {}): Promise<T> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  return callWhole<T>('GET', `/api/v1/apps/${encodeURIComponent(appId)}/${path}?${q}`);
}

export function apiDelete<T>(appId: string, path: string): Promise<T> {
  return call<T>('DELETE', `/api/v1/apps/${encodeURIComponent(appId)}/${path}`);
}

// The shapes of the answers the pages read (docs/api.md).
export interface ValueCount {
  value: string;
  count: number;
}

export interface DailyAnalytics {
  totalNumbers: { users: number; installs: number };
  usage: Record<string, number>;
  newUsers: Record<string, number>;
  activeUsers: Record<string, number>;
  nonNewUsers: Record<string, number>;
  hours: Record<string, number[]>;
  platforms: ValueCount[];
  ram: ValueCount[];
  languages: ValueCount[];
  versions: ValueCount[];
  countries: ValueCount[];
  avgSessionDuration: Record<string, number>;
}

// analytics/sessions (a Nucleon extension): sessions started per local day.
export interface SessionsPerDay {
  sessions: Record<string, number>;
  avgSessionDuration: Record<string, number>;
}

export interface QuickGlance {
  installs: number;
  users: number;
  appStarts: number;
  errors: number;
  previousInstalls: number;
  previousUsers: number;
  previousAppStarts: number;
  previousErrors: number;
}

export interface LiveEvent {
  type: string;
  name: string | null;
  time: string;
  user_id: string | null;
  machine_id: string;
  platform: string | null;
  version: string | null;
  country: string | null;
  session_id: string;
  data: unknown;
}

export interface UserDevice {
  _id: string;
  lastSeen: string;
  platform: string | null;
  osVersion: string | null;
  version: string | null;
}

export interface UserRow {
  _id: string;
  userId: string;
  createdAt: string;
  lastSeen: string;
  devices: UserDevice[];
  props: Record<string, unknown>;
}

export interface UserSession {
  session: string;
  device: string;
  start: string;
  end: string;
  actions: number;
  errors: number;
}

// GET users/:userId (the whole answer: it has no `data` member).
export interface UserDetails {
  user: UserRow;
  sessions: UserSession[];
}

// One event of users/:userId/session/:sessionId.
export interface SessionEvent {
  type: string;
  name: string | null;
  time: string;
  platform: string | null;
  version: string | null;
  first_time: boolean;
  error_hash: string | null;
  data: Record<string, unknown>;
}

// analytics/errors/groups (a Nucleon extension).
export interface ErrorGroup {
  name: string;
  count: number;
  users: number;
  firstSeen: string;
  lastSeen: string;
  sample: { time: string; userId: string; sessionId: string; deviceId: string; message: string; stack: string };
}

export interface EventPropKeys {
  event: string;
  keys: string[];
  type: 'string' | 'number' | 'boolean';
}

// Settings (admins): /api/admin, session cookie and CSRF token only.
export interface AdminApp {
  appId: string;
  name: string;
  createdAt: string;
  activeTokens: number;
  retainDays: number;
}

export interface AdminToken {
  prefix: string;
  createdAt: string;
  revokedAt: string | null;
}

export interface AdminAccount {
  email: string;
  role: 'admin' | 'viewer';
  apps: string[];
  createdAt: string;
}

export function admin<T>(method: string, path: string, body?: unknown): Promise<T> {
  return call<T>(method, `/api/admin/${path}`, body);
}
