// Starts and stops a real `mkondo dev` for the web tests (run from the repository
// root: the dev server serves web/demo and sdk-wasm/pkg from there).
import { spawn } from 'node:child_process';

const bin = process.env.MKONDO_BIN ?? 'target/debug/mkondo';

/** Starts `mkondo dev` (with `extraArgs`, if any) and resolves with its process and address. */
export function startServer(database, listen = '127.0.0.1:0', extraArgs = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['dev', '--listen', listen, '--database', database, ...extraArgs], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    proc.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/listening on (\S+)/);
      if (m) resolve({ proc, addr: m[1] });
    });
    proc.on('exit', (code) => reject(new Error(`mkondo dev exited (${code}): ${out}`)));
  });
}

export function stopServer(server) {
  return new Promise((resolve) => {
    server.proc.removeAllListeners('exit');
    server.proc.on('exit', resolve);
    server.proc.kill('SIGTERM');
  });
}


/** A token (and the direct conversation with `peer`) from the dev endpoint. */
export async function devToken(addr, user, peer) {
  const res = await fetch(`http://${addr}/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user, peer }),
  });
  if (!res.ok) throw new Error(`dev token: HTTP ${res.status}`);
  return res.json();
}
