// node-floor.mjs is the least a node:http server does on the request shapes bench.mjs
// sends, the Node twin of main.go beside it: no per-client state.
//
//   node node-floor.mjs          answers every GET and POST at once with "ok"
//   node node-floor.mjs park     parks every GET until a POST arrives, then answers all
//                                of them with that POST's body and the POST with "ok"
//
// It listens on 127.0.0.1:0 and prints url=http://127.0.0.1:PORT/ on stderr.
import { createServer } from "node:http";

const park = process.argv[2] === "park";
const headers = { "Content-Type": "text/plain; charset=UTF-8" };
let parked = [];

const server = createServer((req, res) => {
  if (req.method === "POST") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      if (park) {
        const body = Buffer.concat(chunks);
        const waiting = parked;
        parked = [];
        for (const r of waiting) r.writeHead(200, headers).end(body);
      }
      res.writeHead(200, headers).end("ok");
    });
    return;
  }
  if (!park) {
    res.writeHead(200, headers).end("ok");
    return;
  }
  parked.push(res);
  res.on("close", () => {
    if (!res.writableFinished) parked = parked.filter((r) => r !== res);
  });
});
server.listen(0, "127.0.0.1", () => {
  console.error(`url=http://127.0.0.1:${server.address().port}/ `);
});
