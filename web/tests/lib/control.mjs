// The real server of the wasm-bindgen-test suite, and a side port through which
// the suite stops and restarts it (wasm can neither listen nor spawn processes).
//
//   node web/tests/lib/control.mjs DATABASE
//
// Starts `mkondo dev` on a free port with DATABASE, prints `server ADDR` and
// `control ADDR`, and serves on the control address:
//   POST /stop   stops the server (SIGTERM: clients are told to reconnect)
//   POST /start  starts it again on the same address with the same database,
//                answering once it listens
// Test only: it runs on loopback for the length of one test script, which stops
// it (and the server with it) by its PID.
import { createServer } from 'node:http';
import { startServer, stopServer } from './server.mjs';

const database = process.argv[2];
if (!database) {
  console.error('usage: control.mjs DATABASE');
  process.exit(2);
}

let server = await startServer(database);
const addr = server.addr;

async function handle(path) {
  if (path === '/stop') {
    if (server) await stopServer(server);
    server = null;
  } else if (path === '/start') {
    server ??= await startServer(database, addr);
  } else {
    return 404;
  }
  return 200;
}

// Requests come one at a time from the suite; the chain keeps a stop and a
// start from overlapping even if they did not.
let queue = Promise.resolve();
const control = createServer((req, res) => {
  // The browser's test page is on another origin than this port.
  res.setHeader('access-control-allow-origin', '*');
  if (req.method !== 'POST') {
    res.writeHead(req.method === 'OPTIONS' ? 204 : 405).end();
    return;
  }
  queue = queue
    .then(() => handle(req.url))
    .then(
      (status) => res.writeHead(status).end(),
      (e) => res.writeHead(500).end(String(e)),
    );
});
control.listen(0, '127.0.0.1', () => {
  const { port } = control.address();
  console.log(`server ${addr}`);
  console.log(`control 127.0.0.1:${port}`);
});

const quit = async () => {
  control.close();
  if (server) await stopServer(server);
  process.exit(0);
};
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
