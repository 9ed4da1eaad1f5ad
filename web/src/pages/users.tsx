import { useState } from 'preact/hooks';
import { apiDelete, apiGetWhole, type UserRow } from '../api';
import { formatNumber } from '../components';
import { useApi } from '../use_api';

const PAGE_SIZE = 50;

// Users by last seen, a page at a time; admins may delete one (after confirming).
export function Users(props: { app: string; admin: boolean }) {
  const { app, admin } = props;
  const [page, setPage] = useState(1);
  const [filter, setFilter] = useState('');
  const [version, setVersion] = useState(0);
  const [message, setMessage] = useState('');
  const res = useApi(`${app}|${page}|${version}`, () =>
    apiGetWhole<{ total: number; data: UserRow[] }>(app, 'users', { page, limit: PAGE_SIZE }),
  );
  if (res.error) return <p class="error" role="alert">{res.error}</p>;
  if (!res.data) return <p class="muted" aria-busy="true">Loading…</p>;
  const { total, data } = res.data;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const shown = filter ? data.filter((u) => u.userId.toLowerCase().includes(filter.toLowerCase())) : data;
  const remove = async (u: UserRow) => {
    if (!confirm(`Delete user ${u.userId} and every event of theirs? This cannot be undone.`)) return;
    try {
      await apiDelete(app, `users/${encodeURIComponent(u.userId)}`);
      setMessage(`Deleted ${u.userId}.`);
      setVersion(version + 1);
    } catch (e) {
      setMessage(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <div class="page">
      <section class="panel" aria-labelledby="h-users">
        <header class="panel-head">
          <h2 id="h-users">
            Users <span class="muted" data-testid="users-total">{formatNumber(total)}</span>
          </h2>
          <label>
            <span class="sr-only">Filter this page</span>
            <input type="search" placeholder="Filter this page" value={filter} data-testid="users-filter"
              onInput={(e) => setFilter((e.currentTarget as HTMLInputElement).value)} />
          </label>
        </header>
        {message && <p role="status" data-testid="users-message">{message}</p>}
        <div class="table-wrap">
          <table data-testid="users-table">
            <thead>
              <tr>
                <th scope="col">user</th>
                <th scope="col">last seen</th>
                <th scope="col">first seen</th>
                <th scope="col">devices</th>
                <th scope="col">platform · version</th>
                {admin && <th scope="col"><span class="sr-only">actions</span></th>}
              </tr>
            </thead>
            <tbody>
              {shown.map((u) => {
                const d = u.devices[u.devices.length - 1];
                return (
                  <tr data-testid={`user-${u.userId}`}>
                    <th scope="row">{u.userId}</th>
                    <td>{new Date(u.lastSeen).toLocaleString()}</td>
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
      </section>
    </div>
  );
}
