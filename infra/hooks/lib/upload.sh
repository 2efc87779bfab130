# shellcheck shell=sh
# The azd hooks' blob upload, retried (POSIX sh; Upload.ps1 beside it is the PowerShell twin). Not a hook: the
# hooks that upload (preprovision.sh, postprovision.sh, predeploy.sh) source it, relative to their own file:
#     . "$(dirname -- "$0")/lib/upload.sh"
#
# upload_batch WHAT ATTEMPTS PAUSE ACCOUNT CONTAINER SOURCE [AZ OPTION...]
#   Uploads the folder SOURCE to the container CONTAINER of the storage account ACCOUNT, overwriting, with
#   `az storage blob upload-batch --auth-mode login` (your own Entra identity, which needs a blob data role on the
#   account); each AZ OPTION (--pattern '*.wav') goes to az after --source. A failed upload is tried again, up to
#   ATTEMPTS tries in all, PAUSE seconds apart: a role assignment made by the same provision can take minutes to
#   apply, so the first upload after a fresh provision commonly fails with 403. WHAT names the upload in the
#   messages ("the prompts"). When the last try fails too, it says so (prefixed with the hook's name) and exits
#   the hook with status 1.
upload_batch() {
    upload_hook=${0##*/}
    upload_hook=${upload_hook%.sh}
    if [ "$#" -lt 6 ]; then
        printf '%s: upload_batch needs WHAT ATTEMPTS PAUSE ACCOUNT CONTAINER SOURCE, got %s arguments\n' \
            "$upload_hook" "$#" >&2
        exit 1
    fi
    upload_what=$1
    upload_attempts=$2
    upload_pause=$3
    upload_account=$4
    upload_container=$5
    upload_source=$6
    shift 6
    for upload_number in "$upload_attempts" "$upload_pause"; do
        case $upload_number in
            '' | *[!0-9]*)
                printf '%s: uploading %s: %s is not a whole number of attempts or seconds\n' \
                    "$upload_hook" "$upload_what" "'$upload_number'" >&2
                exit 1
                ;;
        esac
    done
    upload_attempt=1
    until az storage blob upload-batch --auth-mode login \
        --account-name "$upload_account" --destination "$upload_container" \
        --source "$upload_source" "$@" --overwrite true --only-show-errors --output none; do
        if [ "$upload_attempt" -ge "$upload_attempts" ]; then
            printf '%s: uploading %s failed %s times; check that your account has Storage Blob Data Contributor on %s\n' \
                "$upload_hook" "$upload_what" "$upload_attempts" "$upload_account" >&2
            exit 1
        fi
        printf 'WARNING: uploading %s failed (attempt %s of %s; a new role assignment can take a few minutes); retrying in %ss\n' \
            "$upload_what" "$upload_attempt" "$upload_attempts" "$upload_pause" >&2
        sleep "$upload_pause"
        upload_attempt=$((upload_attempt + 1))
    done
}
