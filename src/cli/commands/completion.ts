/**
 * `piecework completion`: a bash or zsh script that asks piecework itself what may come next.
 *
 * yargs answers `piecework --get-yargs-completions WORDS…` on every parser, even strict ones
 * with exitProcess(false) and no `.completion()` call (its completion key is checked before
 * command dispatch and no handler runs), so the scripts need no registration in main.ts. They
 * differ from yargs' own templates in two ways: they call the piecework the user typed (no
 * absolute path frozen into ~/.bashrc that breaks on upgrade), and they offer paths, not flags,
 * for a word that does not start with "-" (the JOB argument).
 */
import type { CommandModule } from 'yargs';
import path from 'node:path';
import { getContext } from '../context.js';

type Shell = 'bash' | 'zsh';

const bashScript = `###-begin-piecework-completions-###
# piecework completion for bash.  Install:  piecework completion bash >> ~/.bashrc
_piecework_completions() {
  local cur_word="\${COMP_WORDS[COMP_CWORD]}"
  local program="\${COMP_WORDS[0]/#\\~/$HOME}"
  local candidates
  # SHELL=bash: yargs formats its answer for the shell it thinks it serves (zsh adds descriptions).
  candidates=$(SHELL=bash ZSH_NAME= "$program" --get-yargs-completions "\${COMP_WORDS[@]:0:COMP_CWORD+1}" 2>/dev/null)
  # Not a flag: only subcommands may come from piecework; else bash completes a path (-o default).
  [[ "$cur_word" != -* ]] && candidates=$(grep -v -- '^-' <<<"$candidates")
  mapfile -t COMPREPLY < <(compgen -W "$candidates" -- "$cur_word")
  return 0
}
complete -o bashdefault -o default -F _piecework_completions piecework
###-end-piecework-completions-###
`;

const zshScript = `#compdef piecework
###-begin-piecework-completions-###
# piecework completion for zsh.  Install:  piecework completion zsh >> ~/.zshrc
_piecework_completions() {
  local -a reply
  local program="\${words[1]/#\\~/$HOME}"
  # ZSH_NAME makes yargs add each flag's description ("--watch:Report again…").
  reply=(\${(f)"$(ZSH_NAME=zsh "$program" --get-yargs-completions "\${(@)words[1,CURRENT]}" 2>/dev/null)"})
  [[ "\${words[CURRENT]}" != -* ]] && reply=(\${reply:#-*})
  if (( \${#reply} )); then _describe 'values' reply; else _files; fi
}
if [[ "\${zsh_eval_context[-1]}" == "loadautofunc" ]]; then
  _piecework_completions "$@"
else
  compdef _piecework_completions piecework
fi
###-end-piecework-completions-###
`;

const command: CommandModule<object, { shell?: Shell }> = {
  command: 'completion [shell]',
  describe: 'Print a shell completion script (bash or zsh) for commands, flags and job folders',
  builder: (y) =>
    y
      .positional('shell', { choices: ['bash', 'zsh'] as const, describe: 'The shell (default: from $SHELL)' })
      .example('$0 completion bash >> ~/.bashrc', 'install for bash (then open a new shell)')
      .example('$0 completion zsh > "${fpath[1]}/_piecework"', 'install for zsh as an autoloaded function')
      .example('source <($0 completion)', 'try it in the current shell'),
  handler: (argv) => {
    const context = getContext();
    const shell = argv.shell ?? (path.basename(context.env.SHELL ?? '') === 'zsh' ? 'zsh' : 'bash');
    context.stdout.write(shell === 'zsh' ? zshScript : bashScript);
  },
};

export default command;
