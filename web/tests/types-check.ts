// Compiled (not run) by web/tests/run.sh: the package's TypeScript types hold for typical use.
import init, { Client, MkondoError, type Message } from '@mkondo/sdk';
await init();
const c = await Client.create({ url: 'http://x', token: 't' });
const off: () => void = c.on('message', (m: Message) => console.log(m.seq + 1, m.text));
c.on('state', (s) => console.log(s.new));
const m = await c.sendMessage('x', 'y', undefined);
try { await c.history('x', {}); } catch (e) { if (e instanceof MkondoError) console.log(e.code, e.temporary); }
off();
console.log(c.state, m);
