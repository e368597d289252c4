// Reads a JSON array of ServiceMonitor objects on standard input and validates each against
// the Prometheus Operator's CRD schema (monitoring.coreos.com/v1), as published in
// @kubernetes-models/prometheus-operator. Unknown fields are errors, as in the CRD's
// structural schema. Prints one line per object; exits 1 if any is invalid.
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const input = await new Promise((resolve, reject) => {
  let text = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
  process.stdin.on("error", reject);
});
let failed = 0;
for (const [source, object] of JSON.parse(input)) {
  try {
    new ServiceMonitor(object).validate();
    console.log(`ok: ${source}: ServiceMonitor ${object.metadata?.name}`);
  } catch (e) {
    failed++;
    console.log(`INVALID: ${source}: ServiceMonitor ${object.metadata?.name}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
