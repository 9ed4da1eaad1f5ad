import { apiGet, type LiveEvent } from '../api';
import { formatNumber } from '../components';
import { useApi } from '../use_api';

// Refreshed every two seconds: who is online and what they just did.
export function Live(props: { app: string }) {
  const { app } = props;
  const res = useApi(
    `live|${app}`,
    () => Promise.all([apiGet<number>(app, 'live/users/count'), apiGet<LiveEvent[]>(app, 'live/events', { limit: 50 })]),
    2000,
  );
  if (res.error && !res.data) return <p class="error" role="alert">{res.error}</p>;
  if (!res.data) return <p class="muted" aria-busy="true">Loading…</p>;
  const [count, events] = res.data;
  return (
    <div class="page">
      <div class="cards">
        <div class="card" data-testid="card-live-users">
          <div class="card-label">Users online now</div>
          <div class="card-value" data-testid="card-live-users-value" aria-live="polite">
            {formatNumber(count)}
          </div>
          <div class="muted small">devices with an open connection heard from in the last 2 minutes</div>
        </div>
      </div>
      <section class="panel" aria-labelledby="h-live-events">
        <h2 id="h-live-events">Events of the last 10 minutes</h2>
        {events.length === 0 ? (
          <p class="muted">Nothing in the last 10 minutes. Events appear here as SDKs send them.</p>
        ) : (
          <div class="table-wrap">
            <table data-testid="live-events">
              <thead>
                <tr>
                  <th scope="col">time</th>
                  <th scope="col">event</th>
                  <th scope="col">user</th>
                  <th scope="col">platform</th>
                  <th scope="col">version</th>
                </tr>
              </thead>
              <tbody>
                {events.map((e) => (
                  <tr>
                    <td>{new Date(e.time).toLocaleTimeString()}</td>
                    <td class="live-name">{e.type === 'event' ? e.name : e.name ? `${e.type}: ${e.name}` : e.type}</td>
                    <td>{e.user_id ?? e.machine_id}</td>
                    <td>{e.platform ?? ''}</td>
                    <td>{e.version ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </div>
  );
}
