// Stock socket.io-client with a token, as the socket.io-client docs show it: `auth` as a
// function (called before every connection attempt, so a reconnect sends the current
// token), or the token in a cookie. Prints JSON lines: connect, connect_error (message),
// disconnect (reason), snapshot (locations), alert (location), ack (event, ack). Reads
// JSON lines on stdin: {"emit": name, "data": ...} emits with an ack; {"token": t}
// replaces the token for the next connection. Runs until stdin closes.
// Usage: node auth-client.js <url> '{"token":..., "cookie":..., "locations":[...]}'
const { io } = require("socket.io-client");
const readline = require("node:readline");

const [url, optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson);
let token = options.token;
const print = (line) => console.log(JSON.stringify(line));
const socket = io(url, {
  transports: options.transports ?? ["polling", "websocket"],
  reconnectionDelay: 100,
  reconnectionDelayMax: 500,
  extraHeaders: options.cookie ? { cookie: `alert_token=${options.cookie}` } : {},
  auth: (cb) => cb({ ...(token ? { token } : {}), ...(options.locations ? { locations: options.locations } : {}) }),
});
socket.on("connect", () => print({ step: "connect" }));
socket.on("connect_error", (err) => print({ step: "connect_error", message: err.message }));
socket.on("disconnect", (reason) => print({ step: "disconnect", reason }));
socket.on("snapshot", (snapshot) => print({ step: "snapshot", locations: snapshot.active.map((w) => w.location) }));
socket.on("alert", (event) => print({ step: "alert", location: event.location }));
readline.createInterface({ input: process.stdin }).on("line", async (line) => {
  const command = JSON.parse(line);
  if (command.token) token = command.token;
  if (command.emit) {
    const ack = await socket.timeout(10000).emitWithAck(command.emit, command.data);
    print({ step: "ack", event: command.emit, ack });
  }
});
process.stdin.on("end", () => process.exit(0));
