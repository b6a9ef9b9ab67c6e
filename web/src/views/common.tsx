// Small pieces every view shares.
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, type Client } from "../api";

/** What to show for a failed call: the API's one-line message. */
export function errorText(e: unknown): string {
  return e instanceof ApiError ? e.message : String(e);
}

/** An error line, announced to screen readers. */
export function ErrorLine({ error }: { error: string | null }) {
  return error ? (
    <p className="error" role="alert">
      {error}
    </p>
  ) : null;
}

/**
 * Data a view loads from the API when it mounts (and on `refresh`), with
 * the error line's state. `load` is called with the session's client.
 */
export function useLoaded<T>(client: Client, load: (c: Client) => Promise<T>, initial: T) {
  const [data, setData] = useState<T>(initial);
  const [error, setError] = useState<string | null>(null);
  // The newest `load`, without reloading each time a view re-renders.
  const latest = useRef(load);
  latest.current = load;
  const refresh = useCallback(async () => {
    try {
      setData(await latest.current(client));
    } catch (e) {
      setError(errorText(e));
    }
  }, [client]);
  useEffect(() => {
    void refresh();
  }, [refresh]);
  return { data, error, setError, refresh };
}

/** Saves `blob` as a download named `filename`. */
export function saveBlob(blob: Blob, filename: string) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  a.click();
  URL.revokeObjectURL(a.href);
}
