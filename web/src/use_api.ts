import { useLayoutEffect, useState } from 'preact/hooks';

export interface Loaded<T> {
  data?: T;
  error?: string;
  loading: boolean;
}

// Runs `load` whenever `key` changes (and every `refreshMs` when given);
// an answer that arrives after a newer request started is dropped. The
// request leaves as the page is drawn (a layout effect), not a frame later.
export function useApi<T>(key: string, load: () => Promise<T>, refreshMs = 0): Loaded<T> {
  const [state, setState] = useState<Loaded<T>>({ loading: true });
  useLayoutEffect(() => {
    let live = true;
    let timer: number | undefined;
    const run = () => {
      load()
        .then((data) => live && setState({ data, loading: false }))
        .catch((e) => live && setState((s) => ({ ...s, error: e instanceof Error ? e.message : String(e), loading: false })))
        .finally(() => {
          if (live && refreshMs > 0) timer = window.setTimeout(run, refreshMs);
        });
    };
    setState({ loading: true });
    run();
    return () => {
      live = false;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [key]);
  return state;
}
