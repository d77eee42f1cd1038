// Stock socket.io-client against alert-notify: connect (default transports:
// long-polling, then upgrade to WebSocket), subscribe with an ack, print the first
// `alert`. Prints JSON lines: {"step":"ready",...} then {"step":"alert","event":...}.
// Usage: node client.js <url> <location>
const { io } = require("socket.io-client");

const [url, location] = process.argv.slice(2);
const socket = io(url, { auth: { locations: [] }, reconnection: false });
const timer = setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, 20000);

socket.on("connect_error", (err) => {
  console.error("connect_error", err.message);
  process.exit(3);
});
socket.on("snapshot", async (snapshot) => {
  const ack = await socket.timeout(10000).emitWithAck("subscribe", { locations: [location] });
  console.log(JSON.stringify({ step: "ready", snapshot, ack }));
});
socket.on("alert", (event) => {
  console.log(JSON.stringify({ step: "alert", event, transport: socket.io.engine.transport.name }));
  clearTimeout(timer);
  socket.disconnect();
  process.exit(0);
});
