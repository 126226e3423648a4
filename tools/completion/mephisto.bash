# bash completion for mephisto(1). Installed as
# <datadir>/bash-completion/completions/mephisto and loaded on demand by
# bash-completion; or source it from ~/.bashrc.
#
# Commands and each command's options are read from the installed binary's
# own help ("mephisto --help", "mephisto <command> --help") and setting
# names from "mephisto --help-config", so completion follows the binary it
# completes. Answers are cached per shell.

_mephisto_help_words()
{
    # Options (-x, --long) that a help text mentions, one per line.
    "$1" "${@:2}" --help 2>/dev/null |
        grep -oE '(^|[[:space:],[|])--?[A-Za-z][A-Za-z0-9-]*' |
        sed -E 's/^[[:space:],[|]+//' | sort -u
}

_mephisto()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion -n = || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi
    local bin=${words[0]}
    command -v "$bin" >/dev/null 2>&1 || bin=mephisto

    if [[ -z ${_mephisto_commands+x} ]]; then
        _mephisto_commands=$("$bin" --help 2>/dev/null |
            sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')
        _mephisto_commands+=" help"
    fi

    # The command: the first word after the binary that is not an option.
    local cmd="" i
    for ((i = 1; i < cword; i++)); do
        if [[ ${words[i]} != -* ]]; then
            cmd=${words[i]}
            break
        fi
    done

    if [[ -z $cmd ]]; then
        if [[ $prev == --help-config ]]; then
            COMPREPLY=($(compgen -W "--markdown" -- "$cur"))
        elif [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--help --version --help-config" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$_mephisto_commands" -- "$cur"))
        fi
        return 0
    fi

    case $prev in
        --app)
            COMPREPLY=($(compgen -f -X '!*.so' -- "$cur") $(compgen -d -- "$cur"))
            compopt -o filenames 2>/dev/null
            return 0 ;;
        -c | --config | -f | --file)
            COMPREPLY=($(compgen -f -- "$cur"))
            compopt -o filenames 2>/dev/null
            return 0 ;;
        --datadir | --plot-dir | --build)
            COMPREPLY=($(compgen -d -- "$cur"))
            compopt -o filenames 2>/dev/null
            return 0 ;;
        --log-level)
            COMPREPLY=($(compgen -W "error warn info debug" -- "$cur"))
            return 0 ;;
        --log-format | --format)
            COMPREPLY=($(compgen -W "text json" -- "$cur"))
            return 0 ;;
        --value-codec)
            COMPREPLY=($(compgen -W "auto i64 string json raw" -- "$cur"))
            return 0 ;;
        --guarantee)
            COMPREPLY=($(compgen -W "at_least_once exactly_once" -- "$cur"))
            return 0 ;;
        --set)
            if [[ -z ${_mephisto_settings+x} ]]; then
                _mephisto_settings=$("$bin" --help-config 2>/dev/null |
                    sed -n 's/^\([a-z][a-z0-9_.]*\)  .*/\1=/p')
            fi
            COMPREPLY=($(compgen -W "$_mephisto_settings" -- "$cur"))
            compopt -o nospace 2>/dev/null
            return 0 ;;
        --broker | --web | --web-bind | --web-port | --workers | --cpus | --key | -k | \
            --partition | -p | --header | -H | --repeat | -n | --words)
            return 0 ;; # a value of the user's
    esac

    case $cmd in
        help)
            COMPREPLY=($(compgen -W "$_mephisto_commands" -- "$cur"))
            return 0 ;;
        table)
            # "table get|dump" first
            local sub="" j
            for ((j = i + 1; j < cword; j++)); do
                [[ ${words[j]} != -* ]] && sub=${words[j]} && break
            done
            if [[ -z $sub && $cur != -* ]]; then
                COMPREPLY=($(compgen -W "get dump" -- "$cur"))
                return 0
            fi ;;
    esac

    if [[ $cur == -* ]]; then
        local var=_mephisto_opts_${cmd//-/_}
        if [[ -z ${!var+x} ]]; then
            printf -v "$var" '%s' "$(_mephisto_help_words "$bin" "$cmd")"
        fi
        COMPREPLY=($(compgen -W "${!var}" -- "$cur"))
    fi
    return 0
}
complete -F _mephisto mephisto
