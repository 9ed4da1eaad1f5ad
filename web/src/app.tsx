// The dashboard itself: sign-in, the shell (navigation, controls) and the
// pages. Loaded by main.ts, which has already asked the first questions.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, getSession, signIn, signOut, type SessionInfo } from './api';
import { PRESETS, ZONES, browserZone, formatOffset, isDay, zoneOffset } from './time';
import { NO_PICKS, rangeOf, readState, rememberApp, urlOf, zoneOf, type Page, type ViewState } from './state';
import { Overview } from './pages/overview';
import { Live } from './pages/live';
import { Events } from './pages/events';
import { Settings } from './pages/settings';
import { Users } from './pages/users';

function SignIn(props: { onDone: (s: SessionInfo) => void }) {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    setBusy(true);
    setError('');
    try {
      props.onDone(await signIn(String(data.get('email')), String(data.get('password'))));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Nucleon</h1>
        <label>
          Email
          <input name="email" type="email" autocomplete="username" required autofocus />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required />
        </label>
        {error && (
          <p class="error" role="alert" data-testid="signin-error">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
        <p class="muted small">
          Accounts are made on the server: <code>nucleon user add EMAIL --role admin</code>
        </p>
      </form>
    </main>
  );
}

const NAV: { page: Page; label: string; admin?: boolean }[] = [
  { page: 'overview', label: 'Overview' },
  { page: 'events', label: 'Events' },
  { page: 'errors', label: 'Errors' },
  { page: 'users', label: 'Users' },
  { page: 'live', label: 'Live' },
  { page: 'settings', label: 'Settings', admin: true },
];

function Controls(props: { state: ViewState; update: (c: Partial<ViewState>) => void }) {
  const { state, update } = props;
  const range = rangeOf(state);
  const zone = zoneOf(state);
  const zones = ZONES.includes(browserZone()) ? ZONES : [browserZone(), ...ZONES];
  return (
    <div class="controls" role="group" aria-label="Date range and time zone">
      <label>
        <span class="sr-only">Range</span>
        <select
          value={state.preset}
          data-testid="range-preset"
          onChange={(e) => {
            const v = (e.currentTarget as HTMLSelectElement).value;
            update(v === 'custom' ? { preset: v, from: range.from, to: range.to } : { preset: v, from: '', to: '' });
          }}
        >
          {Object.entries(PRESETS).map(([k, p]) => (
            <option value={k}>{p.label}</option>
          ))}
          <option value="custom">Custom range</option>
        </select>
      </label>
      {state.preset === 'custom' && (
        <>
          <label>
            From{' '}
            <input type="date" value={range.from} max={range.to} data-testid="range-from"
              onChange={(e) => { const v = (e.currentTarget as HTMLInputElement).value; if (isDay(v) && v <= range.to) update({ from: v }); }} />
          </label>
          <label>
            To{' '}
            <input type="date" value={range.to} min={range.from} data-testid="range-to"
              onChange={(e) => { const v = (e.currentTarget as HTMLInputElement).value; if (isDay(v) && v >= range.from) update({ to: v }); }} />
          </label>
        </>
      )}
      <label>
        <span class="sr-only">Time zone</span>
        <select value={zone} data-testid="zone" onChange={(e) => {
          const v = (e.currentTarget as HTMLSelectElement).value;
          update({ tz: v === browserZone() ? '' : v });
        }}>
          {zones.map((z) => (
            <option value={z}>
              {z} ({formatOffset(zoneOffset(z))}){z === browserZone() ? ' · this browser' : ''}
            </option>
          ))}
        </select>
      </label>
    </div>
  );
}

// The state, and a setter that pushes a history entry.
function useViewState(): [ViewState, (change: Partial<ViewState>) => void] {
  const [state, setState] = useState(readState);
  useEffect(() => {
    const onPop = () => setState(readState());
    addEventListener('popstate', onPop);
    return () => removeEventListener('popstate', onPop);
  }, []);
  const update = (change: Partial<ViewState>) => {
    const next = { ...state, ...change };
    history.pushState(null, '', urlOf(next));
    setState(next);
  };
  return [state, update];
}

function Shell(props: { session: SessionInfo; onSignOut: () => void; onSessionChanged: () => void }) {
  const { session } = props;
  const [state, update] = useViewState();
  const app = session.apps.find((a) => a.appId === state.app) ?? session.apps[0];
  useEffect(() => {
    if (app) rememberApp(app.appId);
  }, [app?.appId]);
  const go = (e: MouseEvent, change: Partial<ViewState>) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    update(change);
  };
  const range = rangeOf(state);
  const nav = NAV.filter((n) => !n.admin || session.role === 'admin');
  let page;
  if (state.page === 'settings') {
    page = session.role === 'admin' ? <Settings session={session} onChanged={props.onSessionChanged} /> : (
      <section class="panel" data-testid="not-allowed"><h2>Settings</h2><p>Only admins can open Settings.</p></section>
    );
  } else if (!app) {
    page = (
      <section class="panel">
        <h2>No apps</h2>
        <p>
          {session.role === 'admin'
            ? 'Create one in Settings (or on the server: nucleon app create NAME).'
            : 'No app has been granted to this account yet; ask an admin.'}
        </p>
      </section>
    );
  } else if (state.page === 'live') {
    page = <Live app={app.appId} />;
  } else if (state.page === 'users') {
    page = <Users app={app.appId} admin={session.role === 'admin'} state={state} update={update} />;
  } else if (state.page === 'errors') {
    page = <Events app={app.appId} range={range} errors state={state} update={update} />;
  } else if (state.page === 'events') {
    page = <Events app={app.appId} range={range} state={state} update={update} />;
  } else {
    page = <Overview app={app.appId} range={range} />;
  }
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <div class="brand">Nucleon</div>
        <nav aria-label="Pages">
          {nav.map((n) => (
            <a href={urlOf({ ...state, ...NO_PICKS, page: n.page })} aria-current={state.page === n.page ? 'page' : undefined}
              data-testid={`nav-${n.page}`} onClick={(e) => go(e, { ...NO_PICKS, page: n.page })}>
              {n.label}
            </a>
          ))}
        </nav>
        <div class="account">
          {session.apps.length > 0 && (
            <label>
              <span class="sr-only">App</span>
              <select value={app?.appId} data-testid="app-picker" onChange={(e) => update({ ...NO_PICKS, app: (e.currentTarget as HTMLSelectElement).value })}>
                {session.apps.map((a) => (
                  <option value={a.appId}>{a.name} ({a.appId.slice(0, 6)})</option>
                ))}
              </select>
            </label>
          )}
          <span class="muted small" data-testid="whoami">{session.email} · {session.role}</span>
          <button type="button" onClick={props.onSignOut} data-testid="sign-out">Sign out</button>
        </div>
      </header>
      <main id="main" tabIndex={-1} data-page={state.page} data-start={range.start} data-end={range.end}
        data-utc-offset={range.utcOffset} data-app={app?.appId ?? ''}>
        {!['settings', 'live', 'users'].includes(state.page) && <Controls state={state} update={update} />}
        {page}
      </main>
    </>
  );
}

function App(props: { firstSession: Promise<SessionInfo> }) {
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [error, setError] = useState('');
  useEffect(() => {
    props.firstSession
      .then(setSession)
      .catch((e) => {
        if (e instanceof ApiError && e.status === 401) setSession(null);
        else setError(e instanceof Error ? e.message : String(e));
      });
  }, []);
  if (error) return <main class="signin"><p class="error" role="alert">{error}</p></main>;
  if (session === undefined) return <main class="signin"><p class="muted">Loading…</p></main>;
  if (session === null) return <SignIn onDone={setSession} />;
  return (
    <Shell session={session} onSignOut={() => signOut().finally(() => setSession(null))}
      onSessionChanged={() => getSession().then(setSession).catch(() => undefined)} />
  );
}

// Draws the dashboard; `firstSession` is the /api/session call main.ts made.
export function start(firstSession: Promise<SessionInfo>) {
  render(<App firstSession={firstSession} />, document.getElementById('root') as HTMLElement);
}
