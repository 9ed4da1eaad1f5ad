import { useEffect, useState } from 'preact/hooks';
import { apiDelete, apiGet, apiGetWhole, type SessionEvent, type UserDetails, type UserRow, type UserSession } from '../api';
import { Head, formatNumber } from '../components';
import type { ViewState } from '../state';
import { useApi } from '../use_api';

const PAGE_SIZE = 50;

interface Props {
  app: string;
  admin: boolean;
  state: ViewState;
  update: (c: Partial<ViewState>) => void;
}

function when(iso: string): string {
  return new Date(iso).toLocaleString();
}

function seconds(s: UserSession): number {
  return Math.floor((Date.parse(s.end) - Date.parse(s.start)) / 1000);
}

// Users by last seen, a page at a time, searched by user id on the server;
// a user's devices and sessions, and a session's events; admins may delete a
// user (after confirming).
export function Users(props: Props) {
  const { app, admin, state, update } = props;
  const [page, setPage] = useState(1);
  const [text, setText] = useState(state.search);
  const [version, setVersion] = useState(0);
  const [message, setMessage] = useState('');
  useEffect(() => {
    setPage(1);
    setText(state.search);
  }, [state.search, app]);
  const res = useApi(`${app}|${page}|${state.search}|${version}`, () =>
    apiGetWhole<{ total: number; data: UserRow[] }>(app, 'users', { page, limit: PAGE_SIZE, search: state.search || undefined }),
  );
  const remove = async (u: UserRow) => {
    if (!confirm(`Delete user ${u.userId} and every event of theirs? This cannot be undone.`)) return;
    try {
      await apiDelete(app, `users/${encodeURIComponent(u.userId)}`);
      setMessage(`Deleted ${u.userId}.`);
      if (state.user === u.userId) update({ user: '', session: '', device: '' });
      setVersion(version + 1);
    } catch (e) {
      setMessage(e instanceof Error ? e.message : String(e));
    }
  };
  const search = (e: Event) => {
    e.preventDefault();
    update({ search: text.trim(), user: '', session: '', device: '' });
  };
  let list;
  if (res.error) list = <p class="error" role="alert">{res.error}</p>;
  else if (!res.data) list = <p class="muted" aria-busy="true">Loading…</p>;
  else {
    const { total, data } = res.data;
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    list = (
      <>
        <p class="muted small">
          <span data-testid="users-total">{formatNumber(total)}</span> {state.search ? `users whose id contains “${state.search}”` : 'users'}
        </p>
        {message && <p role="status" data-testid="users-message">{message}</p>}
        <div class="table-wrap">
          <table data-testid="users-table">
            <Head columns={['user', 'last seen', 'first seen', 'devices', 'platform · version', ...(admin ? [''] : [])]} />
            <tbody>
              {data.map((u) => {
                const d = u.devices[u.devices.length - 1];
                return (
                  <tr data-testid={`user-${u.userId}`} aria-selected={u.userId === state.user}>
                    <th scope="row">
                      <button type="button" class="link" data-testid={`open-user-${u.userId}`}
                        onClick={() => update({ user: u.userId, session: '', device: '' })}>
                        {u.userId}
                      </button>
                    </th>
                    <td>{when(u.lastSeen)}</td>
                    <td>{new Date(u.createdAt).toLocaleDateString()}</td>
                    <td>{u.devices.length}</td>
                    <td>{d ? `${d.platform ?? '?'} · ${d.version ?? '?'}` : ''}</td>
                    {admin && (
                      <td>
                        <button type="button" class="danger" data-testid={`delete-${u.userId}`} onClick={() => remove(u)}>
                          Delete
                        </button>
                      </td>
                    )}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        <nav class="pager" aria-label="Pages of users">
          <button type="button" disabled={page <= 1} onClick={() => setPage(page - 1)}>Newer</button>
          <span class="muted small">page {page} of {pages}</span>
          <button type="button" disabled={page >= pages} onClick={() => setPage(page + 1)}>Older</button>
        </nav>
      </>
    );
  }
  return (
    <div class="page">
      <section class="panel" aria-labelledby="h-users">
        <header class="panel-head">
          <h2 id="h-users">Users</h2>
          <form role="search" class="search" onSubmit={search}>
            <label>
              <span class="sr-only">Search users by id</span>
              <input type="search" placeholder="Search user ids" value={text} data-testid="users-search"
                onInput={(e) => setText((e.currentTarget as HTMLInputElement).value)} />
            </label>
            <button type="submit" data-testid="users-search-go">Search</button>
          </form>
        </header>
        {list}
      </section>
      {state.user && <UserPanel key={`${app}|${state.user}|${version}`} {...props} />}
    </div>
  );
}

// One user: their devices and sessions; a picked session's events.
function UserPanel(props: Props) {
  const { app, state, update } = props;
  const user = state.user;
  const res = useApi(`${app}|${user}`, () =>
    apiGetWhole<UserDetails>(app, `users/${encodeURIComponent(user)}`),
  );
  if (res.error) return <p class="error" role="alert" data-testid="user-error">{res.error}</p>;
  if (!res.data) return <p class="muted" aria-busy="true">Loading…</p>;
  const { user: u, sessions } = res.data;
  const props_ = Object.entries(u.props);
  return (
    <>
      <section class="panel" aria-labelledby="h-user" data-testid="user-details">
        <header class="panel-head">
          <h2 id="h-user">User {u.userId}</h2>
          <button type="button" onClick={() => update({ user: '', session: '', device: '' })}>Close</button>
        </header>
        <p class="muted small">
          first seen {when(u.createdAt)} · last seen {when(u.lastSeen)}
          {props_.length > 0 && ' · '}
          {props_.map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ')}
        </p>
        <h3 class="sub">Devices</h3>
        <div class="table-wrap">
          <table data-testid="user-devices">
            <Head columns={['device', 'platform', 'OS version', 'version', 'last seen']} />
            <tbody>
              {u.devices.map((d) => (
                <tr>
                  <th scope="row">{d._id}</th>
                  <td>{d.platform ?? ''}</td>
                  <td>{d.osVersion ?? ''}</td>
                  <td>{d.version ?? ''}</td>
                  <td>{when(d.lastSeen)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <h3 class="sub">Sessions</h3>
        <div class="table-wrap">
          <table data-testid="user-sessions">
            <Head columns={['session', 'device', 'start', 'seconds', 'actions', 'errors']} />
            <tbody>
              {sessions.map((s) => (
                <tr aria-selected={s.session === state.session && s.device === state.device}>
                  <th scope="row">
                    <button type="button" class="link" data-testid={`open-session-${s.session}`}
                      onClick={() => update({ session: s.session, device: s.device })}>
                      {s.session}
                    </button>
                  </th>
                  <td>{s.device}</td>
                  <td>{when(s.start)}</td>
                  <td>{formatNumber(seconds(s))}</td>
                  <td data-testid={`session-actions-${s.session}`}>{formatNumber(s.actions)}</td>
                  <td data-testid={`session-errors-${s.session}`}>{formatNumber(s.errors)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      {state.session && <Timeline key={`${app}|${user}|${state.session}|${state.device}`} {...props} />}
    </>
  );
}

function describe(e: SessionEvent): string {
  const data = Object.keys(e.data ?? {}).length ? JSON.stringify(e.data) : '';
  return data.length > 200 ? data.slice(0, 200) + '…' : data;
}

// A session's events, oldest first.
function Timeline(props: Props) {
  const { app, state } = props;
  const res = useApi(`${app}|${state.user}|${state.session}|${state.device}`, () =>
    apiGet<SessionEvent[]>(app, `users/${encodeURIComponent(state.user)}/session/${encodeURIComponent(state.session)}`,
      { device: state.device || undefined }),
  );
  if (res.error) return <p class="error" role="alert">{res.error}</p>;
  if (!res.data) return <p class="muted" aria-busy="true">Loading…</p>;
  const events = res.data;
  const t0 = events.length ? Date.parse(events[0].time) : 0;
  return (
    <section class="panel" aria-labelledby="h-timeline" data-testid="session-timeline">
      <h2 id="h-timeline">Session {state.session} <span class="muted small">on {state.device} · {events.length} events</span></h2>
      <ol class="timeline">
        {events.map((e) => (
          <li class={`tl-${e.type.replace(':', '-')}`} data-testid="timeline-event">
            <span class="tl-time" title={e.time}>+{formatNumber(Math.round((Date.parse(e.time) - t0) / 1000))} s</span>
            <span class="tl-type">{e.type}</span>
            <span class="tl-name">{e.name ?? ''}{e.first_time ? ' (first session of the device)' : ''}</span>
            <code class="tl-data">{describe(e)}</code>
          </li>
        ))}
      </ol>
    </section>
  );
}
