// Small pieces every view shares.
import { ApiError } from "../api";

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
