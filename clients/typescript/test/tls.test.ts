// The client's CA option against a real TLS server whose files `sluice cert` made.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { SluiceError, UnavailableError, WorkflowClient } from "../src/index.js";
import { makeDevCertificates, ServerProcess, type DevCertificates } from "./support/server.js";

const certsDir = mkdtempSync(join(tmpdir(), "sluice-ts-certs-"));
let server: ServerProcess;
let certs: DevCertificates;

before(async () => {
  certs = makeDevCertificates(certsDir);
  server = await new ServerProcess({
    SLUICE_TLS_CERT_FILE: certs.certFile,
    SLUICE_TLS_KEY_FILE: certs.keyFile,
  }).start();
});

after(async () => {
  rmSync(certsDir, { recursive: true, force: true });
  if (server === undefined) return;
  const code = await server.stop();
  assert.equal(code, 0, `server exit code ${code}:\n${server.log}`);
});

async function templateIds(options: ConstructorParameters<typeof WorkflowClient>[0]) {
  const client = new WorkflowClient(options);
  try {
    return (await client.listTemplates({ timeoutMs: 10_000 })).map((template) => template.id);
  } finally {
    client.close();
  }
}

test("caFile and ca trust the development CA", async () => {
  assert.ok(server.baseUrl.startsWith("https://127.0.0.1:"));
  const fromFile = await templateIds({ baseUrl: server.baseUrl, caFile: certs.caFile });
  assert.ok(fromFile.includes("content-to-social"));
  const pem = readFileSync(certs.caFile, "utf8");
  const fromPem = await templateIds({ baseUrl: server.baseUrl, ca: pem });
  assert.ok(fromPem.includes("content-to-social"));
  const localhost = server.baseUrl.replace("127.0.0.1", "localhost");
  assert.ok((await templateIds({ baseUrl: localhost, ca: Buffer.from(pem) })).length >= 3);
});

test("without the CA the certificate is not trusted, and the error says what to do", async () => {
  await assert.rejects(templateIds({ baseUrl: server.baseUrl }), (error) => {
    assert.ok(error instanceof UnavailableError, String(error));
    assert.equal(
      error.message,
      "the server's certificate is not trusted (unable to verify the first certificate): " +
        "pass the CA that signed it as the ca or caFile option",
    );
    return true;
  });
});

test("a CA with a plaintext URL, both forms, or an unreadable file are refused at once", () => {
  const http = server.baseUrl.replace("https://", "http://");
  assert.throws(() => new WorkflowClient({ baseUrl: http, caFile: certs.caFile }), {
    name: "TypeError",
    message: `WorkflowClient: a CA is for TLS servers; use an https:// baseUrl (not ${http})`,
  });
  assert.throws(
    () => new WorkflowClient({ baseUrl: server.baseUrl, ca: "x", caFile: certs.caFile }),
    { name: "TypeError", message: "WorkflowClient: pass either ca or caFile, not both" },
  );
  const missing = { baseUrl: server.baseUrl, caFile: "/nonexistent.pem" };
  assert.throws(() => new WorkflowClient(missing), (error) => {
    assert.ok(!(error instanceof SluiceError));
    assert.match(String(error), /cannot read caFile \/nonexistent\.pem: ENOENT/);
    return true;
  });
});

test("several https:// URLs: each is checked against its own host", async () => {
  const both = [server.baseUrl, server.baseUrl.replace("127.0.0.1", "localhost")];
  assert.ok((await templateIds({ baseUrl: both, caFile: certs.caFile })).length >= 3);
  await assert.rejects(templateIds({ baseUrl: both }), (error) => {
    assert.ok(error instanceof UnavailableError, String(error));
    assert.match(error.message, /^the server's certificate is not trusted \(no server answers: /);
    return true;
  });
});
