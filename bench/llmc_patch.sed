# Patch applied to a scratch copy of llm.c's train_gpt2.c (never committed here) so that it
# runs a timed training loop on given files: checkpoint, shards, B, T and step count come from
# the command line (train_gpt2 MODEL TRAIN VAL B T STEPS), and the periodic validation and
# text generation inside the loop are switched off (they are not training steps).
s/^int main() {/int main(int argc, char **argv) { if (argc < 7) { fprintf(stderr, "usage: train_gpt2 MODEL TRAIN VAL B T STEPS\\n"); return 2; }/
s/gpt2_build_from_checkpoint(&model, "gpt2_124M.bin");/gpt2_build_from_checkpoint(\&model, argv[1]);/
s/^\( *const char\* train_tokens = \).*$/\1argv[2];/
s/^\( *const char\* val_tokens = \).*$/\1argv[3];/
s/^\( *int B = \)4;/\1atoi(argv[4]);/
s/^\( *int T = \)64;/\1atoi(argv[5]);/
s/step <= 40; step++/step < atoi(argv[6]); step++/
s/if (step % 10 == 0) {/if (0) {/
s/if (step > 0 \&\& step % 20 == 0) {/if (0) {/
