# Entry point for `snakemake` run from the project root. The workflow itself lives in
# workflow/Snakefile (the Snakemake catalog layout). An include alone would leave this file
# without a default target ("Nothing to be done", workflow.md §2.8), hence the rule below.


include: "workflow/Snakefile"


rule default:
    default_target: True
    input:
        rules.all.input,
    localrule: True
