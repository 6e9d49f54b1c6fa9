// Polling for a condition a test expects to become true; the deadline only guards against a hang, so no test depends
// on how fast the machine is.

/** Resolves once predicate() holds; throws naming what it waited for after timeoutMs. */
export async function waitUntil(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
