mpp_example(readme_example PASS_REGEX "hits = 4000\n")
