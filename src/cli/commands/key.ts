import { parseArgs } from 'node:util';
import { SigningKey } from '../../integrity/signing-key.js';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';

const HELP = `usage: killswitch key create <file> [--json]

create  makes an Ed25519 signing key (KS-17.7.1) in a new file (PKCS#8 PEM, mode 0600; never
        over an existing file) and prints its key id and public key. Start the control plane
        with 'killswitch serve --signing-key <file>'; hand the public key to
        'killswitch verify --public-key' and to monitors. Keep the key where the store's writer
        cannot read it.
exit codes: 0 done, 1 the file could not be written, 2 usage error`;

/** `killswitch key create <file>`: a signing key for records and checkpoints. */
export const command: CliCommand = {
  name: 'key',
  summary: 'make an Ed25519 signing key for records and checkpoints',
  help: HELP,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub !== 'create') {
      io.stderr(`killswitch key: expected create\n\n${HELP}`);
      return ExitCode.USAGE;
    }
    let file: string;
    let json: boolean;
    try {
      const { values, positionals } = parseArgs({
        args: [...rest],
        options: { json: { type: 'boolean', default: false } },
        allowPositionals: true,
        strict: true,
      });
      if (positionals.length !== 1) throw new Error('expected one <file>');
      file = positionals[0]!;
      json = values.json === true;
    } catch (err) {
      io.stderr(`killswitch key: ${(err as Error).message}\n\n${HELP}`);
      return ExitCode.USAGE;
    }
    return create(file, json, io);
  },
};

async function create(file: string, json: boolean, io: CliIo): Promise<number> {
  const key = SigningKey.generate();
  try {
    await key.save(file);
  } catch (err) {
    io.stderr(`killswitch key: cannot write ${file}: ${(err as Error).message}`);
    return ExitCode.FAILED;
  }
  if (json) io.stdout(JSON.stringify({ file, kid: key.kid, publicKey: key.publicKeyPem }));
  else
    io.stdout(`wrote ${file} (key id ${key.kid}); its public key:\n${key.publicKeyPem.trimEnd()}`);
  return ExitCode.OK;
}
